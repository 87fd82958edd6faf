/**
 * Which per-priority bound of a full queue an arrival meets (router_settings.max_queue_size_by_priority,
 * read by src/adapters/config-queue-bounds.ts), as a plain function: MemoryStore calls it; the Redis
 * enqueue script does the same in Lua.
 */
import type { QueueBound } from '../core/config-types.js';

/**
 * Of the bounds an arrival of `priority` falls under, the narrowest that is full, given the waiting
 * count of each bound's class (`countAtLeast(p)`: waiters of priority >= p); undefined when all have
 * room. Only a waiter of that bound's class can give up its place to the arrival.
 */
export function fullBound(bounds: readonly QueueBound[] | undefined, priority: number, countAtLeast: (minPriority: number) => number): QueueBound | undefined {
  if (bounds === undefined) return undefined;
  let full: QueueBound | undefined;
  for (const b of bounds) if (priority >= b.minPriority && countAtLeast(b.minPriority) >= b.maxWaiting) full = b;
  return full;
}
