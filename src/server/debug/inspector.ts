/**
 * The debugger's recorder: what the `/debug` page shows, fed by XState inspection while a debugger is
 * open and by the router's event bus always.
 *
 * - XState inspection is attached (`router.setInspector`) only while at least one debugger client is
 *   connected, and detached when the last one leaves: with the page closed, inspection costs nothing.
 * - The event bus (`request.*` events, already JSON-safe) is recorded always, into the same bounded
 *   history, so a request that started before the page was opened can still be listed and shown.
 * - Everything kept is bounded: `maxTimelineEntries` per request (oldest dropped, counted) and
 *   `maxRequests` requests in an LRU (the least recently updated is evicted first).
 * - Payloads are summaries built for display, never the live objects: no actor references, no
 *   functions, no class instances other than errors, the request body and message contents only as a
 *   short preview, and anything keyed like a key, token, secret, password or authorization redacted.
 *
 * XState's inspection event shapes are read in ONE place, `adaptInspectionEvent` below (XState v6
 * changes them); the rest of this module and the routes see only the types defined here.
 */
import type { AnyActorRef, InspectionEvent } from 'xstate';
import type { QueueEvent } from '../../events.js';
import { requestMachine } from '../../machines/request-machine.js';
import { schedulerMachine } from '../../machines/scheduler-machine.js';
import type { Router } from '../../router.js';
import { activeStateIds } from './statechart-graph.js';

// ---------------------------------------------------------------------------------------------------
// Public shapes (JSON all the way through: they go over the WebSocket as they are)

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A snapshot's state value: a state key, or nested keys for compound states. */
export type StateValueJson = string | { [key: string]: StateValueJson };

export type TimelineKind = 'event' | 'transition' | 'emitted' | 'sent';

export interface TimelineEntry {
  /** Position in this request's timeline, from 1; kept when older entries are dropped. */
  n: number;
  /** Router clock, ms since the epoch. */
  at: number;
  /**
   * `event`: an event the request actor received (`source` says from whom, when known);
   * `transition`: the snapshot after it processed an event (`from` → `state`);
   * `emitted`: a `request.*` event it emitted (from the event bus);
   * `sent`: an event it sent to its scheduler (`to`).
   */
  kind: TimelineKind;
  /** The event type (`grant`, `xstate.init`, `request.done`, …). */
  type: string;
  payload?: Json;
  source?: string;
  to?: string;
  from?: StateValueJson;
  state?: StateValueJson;
  /** Active state node ids after a transition (ancestors included), for lighting the chart. */
  stateIds?: string[];
  /** True when the transition changed the state value. */
  changed?: boolean;
}

export interface RequestSummary {
  id: string;
  model: string;
  priority: number | null;
  tenant: string | null;
  /** The current state value, from inspection or derived from the last emitted event. */
  state: StateValueJson;
  stateIds: string[];
  /** True once the request reached a final state. */
  finished: boolean;
  deployment: string | null;
  /** Router clock, ms: first seen, and last update. */
  firstAt: number;
  lastAt: number;
  /** Entries kept, and entries dropped because the timeline was full. */
  entries: number;
  dropped: number;
  /** True when at least one entry came from XState inspection (the page was open). */
  inspected: boolean;
}

export interface RequestDetail {
  summary: RequestSummary;
  timeline: TimelineEntry[];
}

export interface SchedulerLogEntry {
  at: number;
  type: string;
  state: StateValueJson;
  changed: boolean;
  payload?: Json;
}

export interface GroupState {
  model: string;
  state: StateValueJson;
  stateIds: string[];
}

/** What a connected debugger client is told, synchronously, as things happen. */
export interface DebugListener {
  /** A scheduler's state value changed. */
  scheduler?(group: GroupState): void;
  /** A request's timeline grew (its summary changed with it). */
  entry?(summary: RequestSummary, entry: TimelineEntry): void;
}

export interface DebugRecorderOptions {
  /** Requests kept (live and finished), least recently updated evicted first. Default 500. */
  maxRequests: number;
  /** Timeline entries kept per request; older ones are dropped and counted. Default 200. */
  maxTimelineEntries: number;
  /** Recent scheduler events kept per model group. Default 50. */
  maxSchedulerLog: number;
  /** Record the router's `request.*` events even while no debugger is open (costs a little on every request). Default false. */
  recordEventsWhenClosed: boolean;
  /** Characters of message content / body shown in previews. Default 80. */
  previewChars: number;
  /** Largest payload summary kept, as JSON characters. Default 4096. */
  maxPayloadChars: number;
}

export const DEFAULT_DEBUG_RECORDER_OPTIONS: DebugRecorderOptions = {
  maxRequests: 500,
  maxTimelineEntries: 200,
  maxSchedulerLog: 50,
  recordEventsWhenClosed: false,
  previewChars: 80,
  maxPayloadChars: 4096,
};

// ---------------------------------------------------------------------------------------------------
// The adapter over XState inspection: the only code that reads XState's inspection event shapes.

type AdaptedInspection =
  /** An event delivered to `target`, sent by `source` (undefined when sent from outside any actor). */
  | { kind: 'event'; target: unknown; source: unknown; event: { type: string } & Record<string, unknown> }
  /** `actor` processed `event` and is now in `snapshot`. */
  | {
      kind: 'snapshot';
      actor: unknown;
      event: { type: string } & Record<string, unknown>;
      value: unknown;
      status: string;
      context: Record<string, unknown> | undefined;
    };

function adaptInspectionEvent(e: InspectionEvent): AdaptedInspection | null {
  if (e.type === '@xstate.event') {
    return { kind: 'event', target: e.actorRef, source: e.sourceRef, event: e.event as AdaptedInspection['event'] };
  }
  if (e.type === '@xstate.snapshot') {
    const snap = e.snapshot as { value?: unknown; status?: string; context?: Record<string, unknown> };
    return {
      kind: 'snapshot',
      actor: e.actorRef,
      event: e.event as AdaptedInspection['event'],
      value: snap.value,
      status: snap.status ?? 'active',
      context: snap.context,
    };
  }
  // `@xstate.actor`, `@xstate.action`, `@xstate.microstep`, `@xstate.transition`: not shown.
  return null;
}

/** The machine an actor runs (v5: `actor.logic`), used to tell request actors from anything else. */
function logicOf(actor: unknown): unknown {
  return (actor as { logic?: unknown } | null | undefined)?.logic;
}

/**
 * What the debugger lists from a request actor's context: the fixed facts live in its `req` (the
 * actor's input), the grant beside them. Null for an actor with no context yet.
 */
function requestFacts(context: Record<string, unknown> | undefined): Record<string, unknown> | null {
  if (context === undefined) return null;
  const req = (context.req ?? {}) as Record<string, unknown>;
  return { id: req.id, model: req.model, priority: req.priority, tenant: req.tenant, grant: context.grant };
}

/** An actor's current context, or undefined if it has none yet. */
function contextOf(actor: unknown): Record<string, unknown> | undefined {
  try {
    return ((actor as AnyActorRef).getSnapshot() as { context?: Record<string, unknown> } | undefined)?.context;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Payload summaries

const SECRET_KEY = /(key|token|secret|password|passwd|authorization|cookie|credential)$/;
const ACTOR_KEYS = new Set(['ref', 'actorref', 'sourceref', 'self', 'scheduler', 'registry', 'store', 'sink', 'clock', 'upstream', 'upstreamfor', 'signal']);
const MAX_DEPTH = 6;
const MAX_ARRAY = 20;
const MAX_KEYS = 40;
const MAX_STRING = 240;

function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key.toLowerCase().replace(/[-_\s]/g, ''));
}

function isActorLike(v: object): boolean {
  const o = v as { send?: unknown; getSnapshot?: unknown };
  return typeof o.send === 'function' && typeof o.getSnapshot === 'function';
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} chars)`;
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part === 'object' && typeof (part as { text?: unknown }).text === 'string' ? (part as { text: string }).text : ''))
      .join(' ');
  }
  return '';
}

/** Messages become a count, the roles, and a short preview of the last one's text. */
function messagesSummary(messages: unknown, previewChars: number): Json {
  if (!Array.isArray(messages)) return null;
  const last = messages[messages.length - 1] as { content?: unknown } | undefined;
  const roles = messages.slice(0, MAX_ARRAY).map((m) => String((m as { role?: unknown } | null)?.role ?? '?'));
  return { count: messages.length, roles, preview: clip(contentText(last?.content).replace(/\s+/g, ' '), previewChars) };
}

/** A chat request body: only the fields that steer scheduling, and a preview of the messages. */
function bodySummary(body: unknown, previewChars: number): Json {
  if (body === null || typeof body !== 'object') return null;
  const b = body as Record<string, unknown>;
  const out: { [k: string]: Json } = {};
  if (typeof b.model === 'string') out.model = clip(b.model, 120);
  out.messages = messagesSummary(b.messages, previewChars);
  for (const k of ['stream', 'max_tokens', 'max_completion_tokens', 'temperature', 'n']) {
    const v = b[k];
    if (typeof v === 'number' || typeof v === 'boolean') out[k] = v;
  }
  const others = Object.keys(b).filter((k) => !(k in out) && k !== 'messages');
  if (others.length) out.otherFields = others.slice(0, MAX_ARRAY).map((k) => clip(k, 60));
  return out;
}

function errorSummary(e: Error): Json {
  const err = e as Error & { code?: unknown; status?: unknown; kind?: unknown; retryAfterSeconds?: unknown };
  const out: { [k: string]: Json } = { name: clip(err.name, 60), message: clip(String(err.message), MAX_STRING) };
  if (typeof err.code === 'string') out.code = clip(err.code, 60);
  if (typeof err.kind === 'string') out.kind = clip(err.kind, 60);
  if (typeof err.status === 'number') out.status = err.status;
  if (typeof err.retryAfterSeconds === 'number') out.retryAfterSeconds = err.retryAfterSeconds;
  return out;
}

function summarize(value: unknown, key: string, depth: number, previewChars: number): Json | undefined {
  if (value === null) return null;
  switch (typeof value) {
    case 'string':
      return clip(value, key === 'content' || key === 'text' || key === 'preview' ? previewChars : MAX_STRING);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  const obj = value as object;
  if (obj instanceof Error) return errorSummary(obj);
  if (isActorLike(obj)) return undefined;
  if (key === 'body') return bodySummary(obj, previewChars);
  if (key === 'messages') return messagesSummary(obj, previewChars);
  if (key === 'snapshot') {
    const s = obj as { status?: unknown; value?: unknown };
    return typeof s.status === 'string' ? { status: s.status } : undefined;
  }
  if (depth >= MAX_DEPTH) return '…';
  if (Array.isArray(obj)) {
    const out: Json[] = [];
    for (const item of obj.slice(0, MAX_ARRAY)) out.push(summarize(item, key, depth + 1, previewChars) ?? null);
    if (obj.length > MAX_ARRAY) out.push(`… ${obj.length - MAX_ARRAY} more`);
    return out;
  }
  const proto = Object.getPrototypeOf(obj) as unknown;
  // Class instances (stores, clocks, sockets, sinks) are internals, not data: left out.
  if (proto !== Object.prototype && proto !== null) return undefined;
  const out: { [k: string]: Json } = {};
  let n = 0;
  for (const [k, v] of Object.entries(obj)) {
    if (ACTOR_KEYS.has(k.toLowerCase())) continue;
    if (n >= MAX_KEYS) {
      out['…'] = `${Object.keys(obj).length - MAX_KEYS} more keys`;
      break;
    }
    if (isSecretKey(k)) {
      if (v !== undefined) out[k] = '[redacted]';
      n++;
      continue;
    }
    const s = summarize(v, k, depth + 1, previewChars);
    if (s !== undefined) {
      out[k] = s;
      n++;
    }
  }
  return out;
}

/**
 * A JSON-safe display summary of an event or any payload: no actor references, functions or class
 * instances (errors become `{name, code, message, status}`), the request body and messages only as a
 * preview, secrets redacted, sizes bounded.
 */
export function sanitizePayload(value: unknown, options: { previewChars?: number; maxChars?: number } = {}): Json | undefined {
  const previewChars = options.previewChars ?? DEFAULT_DEBUG_RECORDER_OPTIONS.previewChars;
  const maxChars = options.maxChars ?? DEFAULT_DEBUG_RECORDER_OPTIONS.maxPayloadChars;
  const out = summarize(value, '', 0, previewChars);
  if (out === undefined) return undefined;
  const size = JSON.stringify(out).length;
  if (size <= maxChars) return out;
  const keys = out !== null && typeof out === 'object' && !Array.isArray(out) ? Object.keys(out).slice(0, MAX_KEYS) : [];
  return { truncated: true, chars: size, keys };
}

// ---------------------------------------------------------------------------------------------------
// The recorder

interface RequestRecord {
  summary: RequestSummary;
  timeline: TimelineEntry[];
  nextN: number;
  /** The state value the last inspected transition reported. */
  inspectedState?: StateValueJson;
}

/** The state a request is in right after emitting each of its events (used when not inspecting). */
const STATE_AFTER_EMIT: Record<string, string> = {
  'request.queued': 'polling',
  'request.dispatched': 'dispatched',
  'request.retry': 'queued',
  'request.done': 'done',
  'request.timeout': 'timeout',
  'request.cancelled': 'cancelled',
  'request.failed': 'failed',
  'request.rejected': 'rejected',
};
/** Events only a scheduler sends (it may send them from a promise callback, with no source actor). */
const SCHEDULER_REPLIES = new Set(['queue.accepted', 'queue.rejected', 'grant', 'queue.timeout']);
const FINAL_STATES = new Set(['done', 'timeout', 'cancelled', 'failed', 'rejected']);

function asStateValue(v: unknown): StateValueJson {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object') {
    const out: { [k: string]: StateValueJson } = {};
    for (const [k, sub] of Object.entries(v)) out[k] = asStateValue(sub);
    return out;
  }
  return String(v);
}

const sameState = (a: StateValueJson | undefined, b: StateValueJson): boolean =>
  a === b || (typeof a === 'object' && typeof b === 'object' && JSON.stringify(a) === JSON.stringify(b));

export class DebugRecorder {
  readonly options: DebugRecorderOptions;
  private readonly requests = new Map<string, RequestRecord>();
  private readonly listeners = new Set<DebugListener>();
  private readonly schedulers = new Map<object, string>();
  private readonly groupStates = new Map<string, StateValueJson>();
  private readonly groupLogs = new Map<string, SchedulerLogEntry[]>();
  /** Request actor → request id (null: not a request actor). Weak: finished actors are collected. */
  private readonly actorIds = new WeakMap<object, string | null>();
  /** The same event object is seen twice (delivered, then processed): summarize it once. */
  private readonly payloads = new WeakMap<object, Json | undefined>();
  private unsubscribeEvents: (() => void) | null = null;
  private inspecting = false;
  private closed = false;

  constructor(
    private readonly router: Router,
    options: Partial<DebugRecorderOptions> = {},
  ) {
    this.options = { ...DEFAULT_DEBUG_RECORDER_OPTIONS, ...options };
    this.learnGroups();
    if (this.options.recordEventsWhenClosed) this.unsubscribeEvents = router.events.subscribe((e) => this.onQueueEvent(e));
  }

  /** True while XState inspection is attached (at least one client connected). */
  get attached(): boolean {
    return this.inspecting;
  }

  get clients(): number {
    return this.listeners.size;
  }

  /** Requests in the history now. */
  get size(): number {
    return this.requests.size;
  }

  /**
   * Registers a debugger client; the first one attaches inspection (and, when events are not recorded
   * while closed, the event bus). Returns the function that unregisters it; the last one to leave
   * detaches both.
   */
  connect(listener: DebugListener): () => void {
    if (this.closed) return () => undefined;
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.attach();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.detach();
    };
  }

  /** Stops recording for good (the app is closing). */
  close(): void {
    this.closed = true;
    this.listeners.clear();
    this.detach();
    this.unsubscribeEvents?.();
    this.unsubscribeEvents = null;
  }

  /** Every model group's scheduler state, read from the actors themselves. */
  groups(): GroupState[] {
    return this.router.models.map((model) => {
      const state = this.currentSchedulerState(model);
      return { model, state, stateIds: activeStateIds(schedulerMachine, state) };
    });
  }

  /** A group's recent scheduler events, oldest first. */
  schedulerLog(model: string, limit = this.options.maxSchedulerLog): SchedulerLogEntry[] {
    const log = this.groupLogs.get(model) ?? [];
    return log.slice(Math.max(0, log.length - limit));
  }

  /** Summaries of the requests in the history, most recently updated first. */
  recentRequests(limit = this.options.maxRequests): RequestSummary[] {
    const out: RequestSummary[] = [];
    const all = [...this.requests.values()];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) out.push({ ...all[i].summary });
    return out;
  }

  /** One request's summary, or undefined when not in the history. */
  summary(id: string): RequestSummary | undefined {
    const r = this.requests.get(id);
    return r ? { ...r.summary } : undefined;
  }

  /** One request's summary and full (bounded) timeline, or undefined when not in the history. */
  request(id: string): RequestDetail | undefined {
    const r = this.requests.get(id);
    return r ? { summary: { ...r.summary }, timeline: [...r.timeline] } : undefined;
  }

  // -------------------------------------------------------------------------------------------------

  private attach(): void {
    if (this.inspecting || this.closed) return;
    this.inspecting = true;
    for (const model of this.router.models) this.groupStates.set(model, this.currentSchedulerState(model));
    this.router.setInspector((e) => {
      try {
        this.onInspection(e);
      } catch {
        // The debugger must never break an actor: XState does not guard inspection observers.
      }
    });
    if (!this.unsubscribeEvents) this.unsubscribeEvents = this.router.events.subscribe((e) => this.onQueueEvent(e));
  }

  private detach(): void {
    if (!this.inspecting) return;
    this.inspecting = false;
    this.router.setInspector(null);
    if (!this.options.recordEventsWhenClosed && this.unsubscribeEvents) {
      this.unsubscribeEvents();
      this.unsubscribeEvents = null;
    }
  }

  private currentSchedulerState(model: string): StateValueJson {
    const actor = this.router.schedulerOf(model);
    try {
      return actor ? asStateValue(actor.getSnapshot().value) : 'unknown';
    } catch {
      return this.groupStates.get(model) ?? 'unknown';
    }
  }

  private now(): number {
    return this.router.clock.now();
  }

  private payloadOf(event: object): Json | undefined {
    if (this.payloads.has(event)) return this.payloads.get(event);
    const p = sanitizePayload(event, { previewChars: this.options.previewChars, maxChars: this.options.maxPayloadChars });
    this.payloads.set(event, p);
    return p;
  }

  /** The request id of a request actor; null for any other actor. */
  private requestIdOf(actor: unknown): string | null {
    if (actor === null || typeof actor !== 'object') return null;
    const known = this.actorIds.get(actor);
    if (known !== undefined) return known;
    if (logicOf(actor) !== requestMachine) {
      this.actorIds.set(actor, null);
      return null;
    }
    const id = requestFacts(contextOf(actor))?.id;
    if (typeof id !== 'string') return null; // not initialised yet: ask again next time
    this.actorIds.set(actor, id);
    return id;
  }

  /** Picks up the groups the router has: all at start, and a wildcard's models as they are first used. */
  private learnGroups(): void {
    for (const model of this.router.models) {
      if (this.groupLogs.has(model)) continue;
      const scheduler = this.router.schedulerOf(model);
      if (scheduler) this.schedulers.set(scheduler, model);
      this.groupLogs.set(model, []);
    }
  }

  /** The model group whose scheduler `actor` is, if it is one. */
  private schedulerModel(actor: object): string | undefined {
    const model = this.schedulers.get(actor);
    if (model !== undefined || this.router.models.length === this.groupLogs.size) return model;
    this.learnGroups();
    return this.schedulers.get(actor);
  }

  private describeActor(actor: unknown): string | undefined {
    if (actor === null || typeof actor !== 'object') return undefined;
    const model = this.schedulerModel(actor);
    if (model !== undefined) return `scheduler ${model}`;
    const id = this.requestIdOf(actor);
    if (id !== null) return `request ${id}`;
    // Any other actor (an invoked one, or the requests' host): named by its source, else its id.
    const src = (actor as { src?: unknown }).src;
    if (typeof src === 'string') return `invoked ${src}`;
    const actorId = (actor as { id?: unknown }).id;
    return typeof actorId === 'string' ? `actor ${actorId}` : 'actor';
  }

  private onInspection(raw: InspectionEvent): void {
    const e = adaptInspectionEvent(raw);
    if (e === null) return;
    if (e.kind === 'event') {
      const targetModel = typeof e.target === 'object' && e.target !== null ? this.schedulerModel(e.target) : undefined;
      if (targetModel !== undefined) {
        // A request telling its scheduler something (enqueue, withdraw, release): on its timeline.
        const from = this.requestIdOf(e.source);
        if (from !== null) {
          const entry: Omit<TimelineEntry, 'n'> = { at: this.now(), kind: 'sent', type: e.event.type, to: `scheduler ${targetModel}` };
          const payload = this.payloadOf(e.event);
          if (payload !== undefined) entry.payload = payload;
          this.append(from, entry, null);
        }
        return;
      }
      const id = this.requestIdOf(e.target);
      if (id === null) return;
      const entry: Omit<TimelineEntry, 'n'> = { at: this.now(), kind: 'event', type: e.event.type };
      const context = requestFacts(contextOf(e.target));
      const source = this.describeActor(e.source) ?? (SCHEDULER_REPLIES.has(e.event.type) && typeof context?.model === 'string' ? `scheduler ${context.model}` : undefined);
      if (source !== undefined) entry.source = source;
      const payload = this.payloadOf(e.event);
      if (payload !== undefined) entry.payload = payload;
      this.append(id, entry, context);
      return;
    }

    const model = typeof e.actor === 'object' && e.actor !== null ? this.schedulerModel(e.actor) : undefined;
    if (model !== undefined) {
      this.onSchedulerSnapshot(model, e.event, asStateValue(e.value));
      return;
    }
    const id = this.requestIdOf(e.actor);
    if (id === null) return;
    const state = asStateValue(e.value);
    const record = this.requests.get(id);
    // Before the first inspected transition, the state known from emitted events (if any) is "from".
    const from = record?.inspectedState ?? (e.event.type === 'xstate.init' ? undefined : record?.summary.state);
    const entry: Omit<TimelineEntry, 'n'> = {
      at: this.now(),
      kind: 'transition',
      type: e.event.type,
      state,
      stateIds: activeStateIds(requestMachine, state),
      changed: from === undefined || !sameState(from, state),
    };
    if (from !== undefined) entry.from = from;
    const payload = this.payloadOf(e.event);
    if (payload !== undefined) entry.payload = payload;
    this.append(id, entry, requestFacts(e.context), { state, finished: e.status !== 'active' });
    const updated = this.requests.get(id);
    if (updated) updated.inspectedState = state;
  }

  private onSchedulerSnapshot(model: string, event: { type: string }, state: StateValueJson): void {
    const previous = this.groupStates.get(model);
    const changed = previous === undefined || !sameState(previous, state);
    const log = this.groupLogs.get(model);
    if (log) {
      const entry: SchedulerLogEntry = { at: this.now(), type: event.type, state, changed };
      const payload = this.payloadOf(event);
      if (payload !== undefined) entry.payload = payload;
      log.push(entry);
      if (log.length > this.options.maxSchedulerLog) log.splice(0, log.length - this.options.maxSchedulerLog);
    }
    if (!changed) return;
    this.groupStates.set(model, state);
    const group: GroupState = { model, state, stateIds: activeStateIds(schedulerMachine, state) };
    for (const l of this.listeners) {
      try {
        l.scheduler?.(group);
      } catch {
        // one client's fault stays with it
      }
    }
  }

  private onQueueEvent(e: QueueEvent): void {
    if (!e.type.startsWith('request.')) {
      // Scheduler-level events (cooldowns, store errors) go to their group's log.
      const model = (e as { model?: unknown }).model;
      const log = typeof model === 'string' ? this.groupLogs.get(model) : undefined;
      if (log) {
        const state = this.groupStates.get(model as string) ?? this.currentSchedulerState(model as string);
        const { seq: _seq, at: _at, ...rest } = e;
        log.push({ at: e.at, type: e.type, state, changed: false, payload: sanitizePayload(rest, { maxChars: 1024 }) ?? null });
        if (log.length > this.options.maxSchedulerLog) log.splice(0, log.length - this.options.maxSchedulerLog);
      }
      return;
    }
    const ev = e as QueueEvent & { id: string; model: string; priority?: number; tenant?: string; deployment?: string };
    const { seq: _seq, at: _at, ...rest } = ev;
    const entry: Omit<TimelineEntry, 'n'> = { at: e.at, kind: 'emitted', type: e.type };
    const payload = sanitizePayload(rest, { previewChars: this.options.previewChars, maxChars: this.options.maxPayloadChars });
    if (payload !== undefined) entry.payload = payload;
    const context: Record<string, unknown> = { id: ev.id, model: ev.model };
    if (ev.priority !== undefined) context.priority = ev.priority;
    if (ev.tenant !== undefined) context.tenant = ev.tenant;
    if (ev.deployment !== undefined) context.grant = { deploymentId: ev.deployment };
    // Inspection reports the state itself; without it, the state is known from what was emitted.
    const derived = STATE_AFTER_EMIT[e.type];
    const inspected = this.requests.get(ev.id)?.summary.inspected === true && this.inspecting;
    const update = derived !== undefined && !inspected ? { state: derived as StateValueJson, finished: FINAL_STATES.has(derived) } : undefined;
    this.append(ev.id, entry, context, update);
  }

  /** Adds an entry to a request's timeline (creating its record), keeping both bounds. */
  private append(id: string, partial: Omit<TimelineEntry, 'n'>, context: Record<string, unknown> | null, update?: { state: StateValueJson; finished: boolean }): void {
    let record = this.requests.get(id);
    if (record === undefined) {
      const model = typeof context?.model === 'string' ? context.model : '';
      const state: StateValueJson = update?.state ?? 'queued';
      record = {
        summary: {
          id,
          model,
          priority: null,
          tenant: null,
          state,
          stateIds: activeStateIds(requestMachine, state),
          finished: false,
          deployment: null,
          firstAt: partial.at,
          lastAt: partial.at,
          entries: 0,
          dropped: 0,
          inspected: false,
        },
        timeline: [],
        nextN: 1,
      };
      this.requests.set(id, record);
      while (this.requests.size > this.options.maxRequests) {
        const oldest = this.requests.keys().next().value as string;
        this.requests.delete(oldest);
      }
    } else {
      // Most recently updated last: the Map's order is the LRU order.
      this.requests.delete(id);
      this.requests.set(id, record);
    }

    const s = record.summary;
    if (context) {
      if (!s.model && typeof context.model === 'string') s.model = context.model;
      if (typeof context.priority === 'number') s.priority = context.priority;
      if (typeof context.tenant === 'string') s.tenant = context.tenant;
      const deployment = (context.grant as { deploymentId?: unknown } | undefined)?.deploymentId;
      if (typeof deployment === 'string') s.deployment = deployment;
    }
    if (partial.kind !== 'emitted') s.inspected = true;
    if (update) {
      s.state = update.state;
      s.stateIds = partial.stateIds ?? activeStateIds(requestMachine, update.state);
      s.finished = s.finished || update.finished;
    }
    s.lastAt = Math.max(s.lastAt, partial.at);

    const entry = Object.assign({ n: record.nextN++ }, partial) as TimelineEntry;
    record.timeline.push(entry);
    if (record.timeline.length > this.options.maxTimelineEntries) {
      const excess = record.timeline.length - this.options.maxTimelineEntries;
      record.timeline.splice(0, excess);
      s.dropped += excess;
    }
    s.entries = record.timeline.length;

    if (this.listeners.size === 0) return;
    const summary = { ...s };
    for (const l of this.listeners) {
      try {
        l.entry?.(summary, entry);
      } catch {
        // one client's fault stays with it
      }
    }
  }
}
