/**
 * Metric cells against prom-client's own Counter and Histogram: the same observations must give the
 * same exposition text, line for line, so /metrics reads the same to Prometheus either way.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CounterFamily, HistogramFamily } from '../src/server/metric-cells.js';

const BUCKETS = [0.01, 0.1, 1, 10];
/** Observations on the bounds, between them, below the first and above the last. */
const OBSERVED: Array<[string, number]> = [
  ['a', 0],
  ['a', 0.01],
  ['a', 0.05],
  ['a', 1],
  ['a', 7.5],
  ['a', 99],
  ['b', 0.1],
];

describe('metric cells', () => {
  it('a histogram family exposes what prom-client Histogram exposes for the same observations', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const family = new HistogramFamily(ours, { name: 'wait_seconds', help: 'Waits.', labelNames: ['model'], buckets: BUCKETS });
    const reference = new Histogram({ name: 'wait_seconds', help: 'Waits.', labelNames: ['model'], buckets: BUCKETS, registers: [theirs] });
    for (const [model, v] of OBSERVED) {
      family.cell({ model }).observe(v);
      reference.observe({ model }, v);
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    expect(text).toContain('wait_seconds_bucket{le="0.01",model="a"} 2');
    expect(text).toContain('wait_seconds_bucket{le="+Inf",model="a"} 6');
    expect(text).toContain('wait_seconds_count{model="b"} 1');
    // The JSON form too (prom-client adds an empty `exemplar` to each value; no exemplars are kept here).
    const withoutExemplars = (metrics: Awaited<ReturnType<Registry['getMetricsAsJSON']>>) =>
      metrics.map((m) => ({ ...m, values: m.values.map((v) => ({ labels: v.labels, value: v.value, metricName: (v as { metricName?: string }).metricName })) }));
    expect(withoutExemplars(await ours.getMetricsAsJSON())).toEqual(withoutExemplars(await theirs.getMetricsAsJSON()));
  });

  it('a counter family exposes what prom-client Counter exposes, and a label set appears on first use', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const family = new CounterFamily(ours, { name: 'admit_total', help: 'Admissions.', labelNames: ['model', 'outcome'] });
    const reference = new Counter({ name: 'admit_total', help: 'Admissions.', labelNames: ['model', 'outcome'], registers: [theirs] });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    const granted = family.cell({ model: 'm', outcome: 'granted' });
    for (let i = 0; i < 3; i++) {
      granted.value += 1;
      reference.inc({ model: 'm', outcome: 'granted' });
    }
    family.cell({ model: 'm', outcome: 'timeout' }).value += 2;
    reference.inc({ model: 'm', outcome: 'timeout' }, 2);
    // The same label set, looked up again, is the same cell.
    expect(family.cell({ model: 'm', outcome: 'granted' })).toBe(granted);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('admit_total{model="m",outcome="granted"} 3');
  });
});
