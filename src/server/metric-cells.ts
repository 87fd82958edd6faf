/**
 * Counters and histograms for what happens once per request, counted in plain numbers ("cells", one per
 * label set) and handed to prom-client only when /metrics is scraped.
 *
 * Why not prom-client's own inc() and observe(): they validate and hash the label set on every call,
 * even on a child from labels(), and four such calls per request were a visible part of a request's
 * whole cost in the gateway (docs/performance.md, "Metrics counted in plain numbers"). Here a hot path finds its cell once (one Map lookup
 * by label values) and counting is an addition. The exposition is still prom-client's, from a real
 * Counter or Histogram in the registry, so names, HELP, TYPE and label formatting are unchanged.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export interface CounterCell {
  value: number;
}

export interface HistogramCell {
  observe(value: number): void;
}

interface Family<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
}

type Labels<L extends string> = Record<L, string>;

/** Cells by label values, joined by NUL (two label sets could collide only through a NUL inside a value). */
class CellMap<L extends string, C> {
  private readonly byKey = new Map<string, { labels: Labels<L>; cell: C }>();

  constructor(
    private readonly labelNames: readonly L[],
    private readonly make: () => C,
  ) {}

  get(labels: Labels<L>): C {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let entry = this.byKey.get(key);
    if (entry === undefined) this.byKey.set(key, (entry = { labels: Object.assign({}, labels), cell: this.make() }));
    return entry.cell;
  }

  entries(): IterableIterator<{ labels: Labels<L>; cell: C }> {
    return this.byKey.values();
  }
}

/** A Prometheus counter whose label sets are counted in cells; a label set appears once its cell exists. */
export class CounterFamily<L extends string> {
  private readonly cells: CellMap<L, CounterCell>;

  constructor(registry: Registry, family: Family<L>) {
    const cells = (this.cells = new CellMap<L, CounterCell>(family.labelNames, () => ({ value: 0 })));
    new Counter<L>({
      name: family.name,
      help: family.help,
      labelNames: family.labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, cell } of cells.entries()) this.inc(labels, cell.value);
      },
    });
  }

  /** The cell of one label set, made on first use: hot paths keep it and add to `value`. */
  cell(labels: Labels<L>): CounterCell {
    return this.cells.get(labels);
  }
}

/** Observations of one label set: counts per bucket (not cumulative), their sum and count. */
class BucketCounts implements HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]! += 1;
    this.sum += value;
    this.count += 1;
  }
}

type HistogramData<L extends string> = Awaited<ReturnType<Histogram<L>['get']>>;

/**
 * A prom-client Histogram that reports its cells. Its exposition methods are overridden to read the
 * cells (prom-client's own observe() is not used); the registry formats the result as for any histogram.
 */
class CellHistogram<L extends string> extends Histogram<L> {
  constructor(
    private readonly family: Family<L>,
    registry: Registry,
    private readonly bounds: readonly number[],
    private readonly cells: CellMap<L, BucketCounts>,
  ) {
    super({ name: family.name, help: family.help, labelNames: family.labelNames, buckets: [...bounds], registers: [registry] });
  }

  override async get(): Promise<HistogramData<L>> {
    const { name, help } = this.family;
    const values: HistogramData<L>['values'] = [];
    for (const { labels, cell } of this.cells.entries()) {
      let cumulative = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        values.push({ metricName: `${name}_bucket`, labels: Object.assign({ le: this.bounds[i]! }, labels), value: cumulative });
      }
      values.push({ metricName: `${name}_bucket`, labels: Object.assign({ le: '+Inf' }, labels), value: cell.count });
      values.push({ metricName: `${name}_sum`, labels, value: cell.sum });
      values.push({ metricName: `${name}_count`, labels, value: cell.count });
    }
    // prom-client's typings declare `type` as a numeric enum (and a `collect`); at runtime it is this string.
    return { name, help, type: 'histogram', values, aggregator: 'sum' } as unknown as HistogramData<L>;
  }

  /** What prom-client's registry reads for the text format (its Histogram has its own; this replaces it). */
  getForPromString(): Promise<HistogramData<L>> {
    return this.get();
  }
}

/** A Prometheus histogram whose label sets are counted in cells. */
export class HistogramFamily<L extends string> {
  private readonly cells: CellMap<L, BucketCounts>;

  constructor(registry: Registry, family: Family<L> & { buckets: readonly number[] }) {
    const bounds = [...family.buckets].sort((a, b) => a - b);
    this.cells = new CellMap<L, BucketCounts>(family.labelNames, () => new BucketCounts(bounds));
    new CellHistogram<L>(family, registry, bounds, this.cells);
  }

  cell(labels: Labels<L>): HistogramCell {
    return this.cells.get(labels);
  }
}
