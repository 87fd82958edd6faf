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
  'deployment.upstream_limited',
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
  /** One model (or a comma-separated list): the same as `models`. */
  model?: unknown;
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

/** Query parameters `/queue/events` takes: the filter's, and `token` (browsers cannot send headers to a WebSocket). */
export const FILTER_QUERY_PARAMS: ReadonlySet<string> = new Set(['models', 'model', 'types', 'request', 'mine', 'token']);

/**
 * Parses a filter from query parameters or a subscribe message; unknown names are a 400-style error.
 * `knownModels` is the list of group names, or a function giving the group a name's events carry (an
 * alias's group; a model a wildcard serves, before its first request too), undefined when none.
 */
export function parseFilter(input: FilterInput, knownModels: readonly string[] | ((name: string) => string | undefined)): EventFilter {
  const filter: EventFilter = { mine: input.mine === true || input.mine === 'true' || input.mine === '1' };
  const one = list(input.model, 'model');
  const many = list(input.models, 'models');
  const models = one && many ? [...many, ...one] : (many ?? one);
  if (models) {
    const groupOf = typeof knownModels === 'function' ? knownModels : (m: string) => (knownModels.includes(m) ? m : undefined);
    const groups = models.map(groupOf);
    const unknown = models.find((_, i) => groups[i] === undefined);
    if (unknown !== undefined) throw new TriageError('model_not_found', `The model '${unknown.slice(0, 200)}' does not exist.`, { param: 'models' });
    filter.models = new Set(groups as string[]);
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
