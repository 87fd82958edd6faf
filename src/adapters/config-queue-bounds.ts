/**
 * `router_settings.max_queue_size_by_priority`: per-priority bounds on a group's queue, so batch work
 * cannot fill it. `{ "100": 1000 }` means the waiters of priority 100 or worse (a higher number) hold at
 * most 1,000 of the group's places; several bounds nest (`{ "10": 5000, "100": 1000 }`: priorities >= 10
 * at most 5,000, of which priorities >= 100 at most 1,000). max_queue_size still bounds the whole queue.
 */
import { childPath, describeValue, isAbsent, isMap, type RawMap } from './config-checks.js';
import type { ConfigIssue, QueueBound } from '../core/config-types.js';

export const QUEUE_BOUNDS_KEY = 'max_queue_size_by_priority';

/** The bounds, best threshold first; undefined when not set. Problems are issues naming their path and value. */
export function readQueueBounds(map: RawMap, path: string, issues: ConfigIssue[]): QueueBound[] | undefined {
  const value = map[QUEUE_BOUNDS_KEY];
  if (isAbsent(value)) return undefined;
  const at = childPath(path, QUEUE_BOUNDS_KEY);
  if (!isMap(value)) {
    issues.push({ path: at, message: `expected a map of priority to the most waiters of that priority or worse, got ${describeValue(value)}` });
    return undefined;
  }
  const bounds: QueueBound[] = [];
  for (const [key, max] of Object.entries(value)) {
    const here = childPath(at, key);
    const minPriority = Number(key);
    if (key.trim() === '' || !Number.isInteger(minPriority)) {
      issues.push({ path: here, message: `the key must be an integer priority, got ${JSON.stringify(key)}` });
      continue;
    }
    if (typeof max !== 'number' || !Number.isInteger(max) || max < 0) {
      issues.push({ path: here, message: `expected a non-negative integer, got ${describeValue(max)}` });
      continue;
    }
    bounds.push({ minPriority, maxWaiting: max });
  }
  return bounds.sort((a, b) => a.minPriority - b.minPriority);
}
