/** Builds table rows: a figure, its same-run baseline and ratio, and its target's status. */
import { ratio, targetStatus, type Status } from './measure.js';
import type { Row } from './report.js';

export interface RowSpec {
  scenario: string;
  measure: string;
  unit: string;
  value: number | null;
  baseline?: number | null;
  baselineLabel?: string;
  /** Show value / baseline (default: when there is a baseline). */
  showRatio?: boolean;
  /** The target as [comparison, number, text]; the status compares `targetOf` (default: value). */
  target?: { comparison: '<' | '<=' | '>=' | '=='; limit: number; text: string; on?: 'value' | 'ratio' };
  note?: string;
}

export function row(spec: RowSpec): Row {
  const baseline = spec.baseline ?? null;
  const r = spec.showRatio === false ? null : ratio(spec.value, baseline);
  let status: Status = 'n/a';
  if (spec.target) status = targetStatus(spec.target.on === 'ratio' ? ratio(spec.value, baseline) : spec.value, spec.target.comparison, spec.target.limit);
  const out: Row = {
    scenario: spec.scenario,
    measure: spec.measure,
    unit: spec.unit,
    value: spec.value,
    baseline,
    baselineLabel: spec.baselineLabel ?? '',
    ratio: r,
    target: spec.target?.text ?? '',
    status,
  };
  if (spec.note !== undefined) out.note = spec.note;
  return out;
}

/** A row for a scenario that could not run (e.g. no Redis): value n/a, status n/a, with the reason. */
export function unavailable(scenario: string, measure: string, target: string, reason: string): Row {
  return { scenario, measure, unit: '', value: null, baseline: null, baselineLabel: '', ratio: null, target, status: 'n/a', note: `not available: ${reason}` };
}
