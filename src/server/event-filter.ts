/**
 * Which queue events a WebSocket subscriber receives: chosen by the client (model groups, event
 * types, one request id, only its own key's requests) and bounded by what its key may see (a key
 * that is not the master sees only its own requests).
 */
import type { QueueEvent, QueueEventType } from '../events.js';
import { TriageError } from '../errors.js';
import type { Caller } from './auth.js';

export const EVENT_TYPES: readonly QueueEventType[] = [
  'request.queued',
  'request.dispatched',
  'request.done',
  'request.retry',
  'request.timeout',
  'request.cancelled',
  'request.failed',
  'request.rejected',
  'request.displaced',
  'request.position',
  'deployment.cooldown_start',
  'deployment.cooldown_end',
  'store.error',
];

export interface EventFilter {
  models?: Set<string>;
  types?: Set<string>;
  request?: string;
  /** Only the caller's own key's requests. */
  mine: boolean;
}

export interface FilterInput {
  models?: unknown;
  types?: unknown;
  request?: unknown;
  mine?: unknown;
}

function list(value: unknown, param: string): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const items = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(items) || items.some((i) => typeof i !== 'string') || items.length > 100) {
    throw new TriageError('invalid_request', `${param} must be a list of strings (or a comma-separated string).`, { param });
  }
  return (items as string[]).map((s) => s.trim()).filter((s) => s !== '');
}

/** Parses a filter from query parameters or a subscribe message; unknown names are a 400-style error. */
export function parseFilter(input: FilterInput, knownModels: readonly string[]): EventFilter {
  const filter: EventFilter = { mine: input.mine === true || input.mine === 'true' || input.mine === '1' };
  const models = list(input.models, 'models');
  if (models) {
    const unknown = models.find((m) => !knownModels.includes(m));
    if (unknown !== undefined) throw new TriageError('model_not_found', `The model '${unknown.slice(0, 200)}' does not exist.`, { param: 'models' });
    filter.models = new Set(models);
  }
  const types = list(input.types, 'types');
  if (types) {
    const unknown = types.find((t) => !EVENT_TYPES.includes(t as QueueEventType));
    if (unknown !== undefined) throw new TriageError('invalid_request', `Unknown event type '${unknown.slice(0, 100)}'. Known: ${EVENT_TYPES.join(', ')}.`, { param: 'types' });
    filter.types = new Set(types);
  }
  if (input.request !== undefined && input.request !== null && input.request !== '') {
    if (typeof input.request !== 'string' || input.request.length > 200) throw new TriageError('invalid_request', 'request must be a request id string.', { param: 'request' });
    filter.request = input.request;
  }
  return filter;
}

/** Whether `caller` with `filter` receives `event`. */
export function accepts(filter: EventFilter, caller: Caller, event: QueueEvent): boolean {
  if (filter.models && !filter.models.has(event.model)) return false;
  if (filter.types && !filter.types.has(event.type)) return false;
  const tenant = (event as { tenant?: string }).tenant;
  const id = (event as { id?: string }).id;
  if (filter.request !== undefined && id !== filter.request) return false;
  // Request events belong to a key: other keys never see them; the master (or an open gateway) sees all.
  const seesAll = caller.kind === 'master' || caller.kind === 'open';
  if (tenant !== undefined && (filter.mine || !seesAll) && tenant !== caller.name) return false;
  return true;
}
