/**
 * The statechart debugger: `GET /debug` (a plain HTML/JS/CSS page, no bundler, no CDN), the machines
 * drawn as SVG, and `GET /debug/live`, a WebSocket that feeds the page from the DebugRecorder.
 *
 * | path | auth |
 * |---|---|
 * | `/debug`, `/debug/assets/debug.js`, `/debug/assets/debug.css` | public: static files, no data |
 * | `/debug/machines`, `/debug/machines/:id.svg`, `/debug/requests/:id`, `/debug/live` | master key (when keys are configured) |
 *
 * The page passes its own `?token=` on: as `Authorization: Bearer` to fetches, as `?token=` to the
 * WebSocket. Virtual keys are refused: the debugger shows every tenant's requests. Any query parameter
 * other than `token` is refused (400 naming it).
 *
 * The live socket sends `{type:"init"}` (groups with their scheduler state, recent request summaries),
 * then: `scheduler` (a scheduler's state changed; coalesced, ≤ 20/s), `queue` (every group's queue
 * snapshot and recent scheduler events; ≤ 5/s and only when it changed), `requests` (summaries that
 * changed since the last `queue` tick), and for the one selected request every `entry` of its
 * timeline as it happens. The client sends `{type:"select", request: id | null}` to get
 * `{type:"request"}` with that request's whole timeline, and `{type:"ping"}`. Like `/queue/events`,
 * a slow reader never slows the gateway: past `maxBufferedBytes` unsent, messages are dropped and
 * counted (`{type:"lagged"}` once it catches up), and a reader behind for `maxLagMs` is closed (1013).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AnyStateMachine } from 'xstate';
import type { WebSocket } from 'ws';
import { TriageError } from '../../errors.js';
import { requestMachine } from '../../machines/request-machine.js';
import { schedulerMachine } from '../../machines/scheduler-machine.js';
import type { Router } from '../../router.js';
import type { Caller } from '../auth.js';
import { checkQueryParams } from '../query-params.js';
import type { DebugRecorder, GroupState, RequestSummary, TimelineEntry } from './inspector.js';
import { machineToGraph } from './statechart-graph.js';
import { renderStatechartSvg } from './statechart-svg.js';

// ---------------------------------------------------------------------------------------------------
// The machines the debugger draws (also exported as static SVGs by src/export-statecharts.ts)

export interface DebugMachine {
  id: string;
  title: string;
  description: string;
  machine: AnyStateMachine;
}

export const DEBUG_MACHINES: readonly DebugMachine[] = [
  { id: 'request', title: 'Request', description: 'One actor per chat completion: queued → polling → dispatched → done, or a final error state.', machine: requestMachine },
  { id: 'scheduler', title: 'Scheduler', description: 'One actor per model group: grants slots the moment capacity exists.', machine: schedulerMachine },
];

const svgCache = new Map<string, Promise<string>>();

/** The machine's statechart as a standalone SVG (rendered once per process). */
export function renderMachineSvg(id: string): Promise<string> | undefined {
  const m = DEBUG_MACHINES.find((d) => d.id === id);
  if (m === undefined) return undefined;
  let svg = svgCache.get(id);
  if (svg === undefined) {
    // A per-machine prefix keeps marker ids unique when both drawings share one page.
    svg = renderStatechartSvg(m.machine, { idPrefix: `${m.id}-`, title: `${m.title} statechart` });
    svg.catch(() => svgCache.delete(id));
    svgCache.set(id, svg);
  }
  return svg;
}

// ---------------------------------------------------------------------------------------------------
// The page's files

/** Served without a key: the page and its assets carry no data. */
export const DEBUG_PUBLIC_PATHS = ['/debug', '/debug/assets/debug.js', '/debug/assets/debug.css'];

const PAGE_FILES: Record<string, { file: string; type: string }> = {
  page: { file: 'index.html', type: 'text/html; charset=utf-8' },
  'debug.js': { file: 'debug.js', type: 'text/javascript; charset=utf-8' },
  'debug.css': { file: 'debug.css', type: 'text/css; charset=utf-8' },
};

/**
 * Where the page's sources are. `tsc` does not copy non-TS files: from `src/` (vitest) they sit next
 * to this module; from `dist/src/` (the built CLI) they are found in the project's `src/` tree.
 */
export function debugPageDir(): string {
  const candidates = [new URL('./page/', import.meta.url), new URL('../../../../src/server/debug/page/', import.meta.url)];
  for (const dir of candidates) {
    if (existsSync(fileURLToPath(new URL('index.html', dir)))) return fileURLToPath(dir);
  }
  throw new Error(`the debugger page was not found (looked in ${candidates.map((u) => fileURLToPath(u)).join(', ')})`);
}

const PAGE_HEADERS = {
  // Inline styles: the SVGs carry their own <style>. Scripts only from here.
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  // The page's URL may hold ?token=: never send it anywhere as a referrer.
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

// ---------------------------------------------------------------------------------------------------

export interface DebugRoutesOptions {
  /** Unsent bytes past which a client's messages are dropped (and counted). */
  maxBufferedBytes: number;
  /** A client lagging this long is closed with 1013. */
  maxLagMs: number;
  /** Period of queue snapshots and request-summary batches (200 ms = at most 5/s). */
  queueIntervalMs: number;
  /** Waiters listed per group in queue snapshots. */
  maxWaiters: number;
  /** Scheduler events listed per group in queue snapshots. */
  schedulerLogEntries: number;
  /** Timeline entries waiting to be sent to one client before more are dropped. */
  maxOutbox: number;
}

export const DEFAULT_DEBUG_ROUTES_OPTIONS: DebugRoutesOptions = {
  maxBufferedBytes: 1 << 20,
  maxLagMs: 30_000,
  queueIntervalMs: 200,
  maxWaiters: 50,
  schedulerLogEntries: 25,
  maxOutbox: 1_000,
};

/** The debugger's one query parameter: the key, for the page's address and its WebSocket. */
const DEBUG_QUERY_PARAMS: ReadonlySet<string> = new Set(['token']);

/** Any other query parameter is a 400 naming it, as on every other endpoint. */
async function checkDebugQuery(request: FastifyRequest): Promise<void> {
  checkQueryParams(request.query, DEBUG_QUERY_PARAMS);
}

/** Only the master key (or an open gateway) may look at every tenant's requests; then the query is checked. */
async function requireMaster(request: FastifyRequest): Promise<void> {
  const caller = (request as unknown as { caller?: Caller }).caller;
  if (caller?.kind === 'key') throw new TriageError('unauthorized', 'The debugger needs the master key.');
  checkQueryParams(request.query, DEBUG_QUERY_PARAMS);
}

export function registerDebugRoutes(app: FastifyInstance, router: Router, recorder: DebugRecorder, opts: Partial<DebugRoutesOptions> = {}): void {
  const options = { ...DEFAULT_DEBUG_ROUTES_OPTIONS, ...opts };
  const files = new Map<string, Promise<string>>();
  let pageDir: string | undefined;

  const serveFile = async (name: string, reply: FastifyReply) => {
    const spec = PAGE_FILES[name]!;
    let text = files.get(name);
    if (text === undefined) {
      pageDir ??= debugPageDir();
      text = readFile(`${pageDir}${spec.file}`, 'utf8');
      text.catch(() => files.delete(name));
      files.set(name, text);
    }
    const body = await text;
    return reply.headers(PAGE_HEADERS).type(spec.type).send(body);
  };

  app.get('/debug', { preValidation: checkDebugQuery }, (_request, reply) => serveFile('page', reply));
  app.get('/debug/assets/debug.js', { preValidation: checkDebugQuery }, (_request, reply) => serveFile('debug.js', reply));
  app.get('/debug/assets/debug.css', { preValidation: checkDebugQuery }, (_request, reply) => serveFile('debug.css', reply));

  app.get('/debug/machines', { preValidation: requireMaster }, async () =>
    DEBUG_MACHINES.map((m) => ({
      id: m.id,
      title: m.title,
      description: m.description,
      svg: `/debug/machines/${m.id}.svg`,
      states: machineToGraph(m.machine).nodes.map((n) => n.id),
    })),
  );

  app.get('/debug/machines/:file', { preValidation: requireMaster }, async (request, reply) => {
    const file = (request.params as { file: string }).file;
    const id = file.endsWith('.svg') ? file.slice(0, -4) : undefined;
    const svg = id === undefined ? undefined : renderMachineSvg(id);
    if (svg === undefined) throw new TriageError('not_found', `No machine drawing ${file.slice(0, 100)}; see /debug/machines.`);
    return reply.header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').type('image/svg+xml; charset=utf-8').send(await svg);
  });

  app.get('/debug/requests/:id', { preValidation: requireMaster }, async (request) => {
    const id = (request.params as { id: string }).id;
    const detail = recorder.request(id);
    if (detail === undefined) throw new TriageError('not_found', `The request ${id.slice(0, 100)} is not in the debugger's history.`);
    return detail;
  });

  app.get('/debug/live', { websocket: true, preValidation: requireMaster }, (socket: WebSocket) => {
    let selected: string | null = null;
    let dropped = 0;
    let lagSince: number | null = null;
    let closed = false;
    let lastQueueJson = '';
    let ticking = false;
    /** Request ids whose summary changed since the last tick; null: too many, send the whole list. */
    let dirty: Set<string> | null = new Set();
    const pendingGroups = new Map<string, GroupState>();
    let groupTimer: NodeJS.Timeout | null = null;
    let outbox: Array<{ summary: RequestSummary; entry: TimelineEntry }> = [];
    let outboxScheduled = false;

    const onFlushed = () => {
      if (dropped > 0 && socket.bufferedAmount <= options.maxBufferedBytes && socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ type: 'lagged', dropped }));
        dropped = 0;
        lagSince = null;
      }
    };
    /** Sends unless the client is too far behind; then counts the message as dropped. */
    const send = (message: unknown): boolean => {
      if (closed || socket.readyState !== socket.OPEN) return false;
      if (socket.bufferedAmount > options.maxBufferedBytes) {
        dropped += 1;
        lagSince ??= Date.now();
        if (Date.now() - lagSince > options.maxLagMs) socket.close(1013, 'debugger client too slow');
        return false;
      }
      onFlushed();
      socket.send(JSON.stringify(message), onFlushed);
      return true;
    };

    const flushOutbox = () => {
      outboxScheduled = false;
      const batch = outbox;
      outbox = [];
      for (const { summary, entry } of batch) {
        if (summary.id === selected) send({ type: 'entry', request: summary.id, entry, summary });
      }
    };
    const flushGroups = () => {
      groupTimer = null;
      if (pendingGroups.size === 0) return;
      const groups = [...pendingGroups.values()];
      pendingGroups.clear();
      for (const g of groups) send({ type: 'scheduler', ...g });
    };

    const disconnect = recorder.connect({
      scheduler: (group) => {
        pendingGroups.set(group.model, group);
        if (groupTimer === null && !closed) groupTimer = setTimeout(flushGroups, 50);
      },
      entry: (summary, entry) => {
        if (dirty !== null) {
          dirty.add(summary.id);
          if (dirty.size > recorder.options.maxRequests) dirty = null;
        }
        if (summary.id !== selected) return;
        // Sent after the actor's step, never from inside it.
        if (outbox.length < options.maxOutbox) outbox.push({ summary, entry });
        else dropped += 1;
        if (!outboxScheduled) {
          outboxScheduled = true;
          setImmediate(flushOutbox);
        }
      },
    });

    const tick = async () => {
      if (ticking || closed) return;
      ticking = true;
      try {
        const states = new Map(recorder.groups().map((g) => [g.model, g]));
        let snapshots: Awaited<ReturnType<Router['queueStatus']>> = [];
        try {
          snapshots = await router.queueStatus(options.maxWaiters);
        } catch {
          // A store that cannot answer (Redis down, closing) leaves the last queue view on the page.
        }
        if (closed) return;
        if (snapshots.length) {
          const groups = snapshots.map((s) => ({ ...s, ...states.get(s.model), log: recorder.schedulerLog(s.model, options.schedulerLogEntries) }));
          const json = JSON.stringify(groups);
          if (json !== lastQueueJson) {
            lastQueueJson = json;
            send({ type: 'queue', at: router.clock.now(), groups });
          }
        }
        const changed = dirty;
        dirty = new Set();
        if (changed === null) send({ type: 'requests', full: true, requests: recorder.recentRequests() });
        else if (changed.size) {
          const requests: RequestSummary[] = [];
          for (const id of changed) {
            const s = recorder.summary(id);
            if (s) requests.push(s);
          }
          if (requests.length) send({ type: 'requests', requests });
        }
      } finally {
        ticking = false;
      }
    };
    const interval = setInterval(() => void tick(), options.queueIntervalMs);
    interval.unref();

    const cleanup = () => {
      if (closed) return;
      closed = true;
      clearInterval(interval);
      if (groupTimer) clearTimeout(groupTimer);
      outbox = [];
      disconnect();
    };
    socket.on('close', cleanup);
    socket.on('error', cleanup);

    send({
      type: 'init',
      at: router.clock.now(),
      limits: {
        maxRequests: recorder.options.maxRequests,
        maxTimelineEntries: recorder.options.maxTimelineEntries,
        queueIntervalMs: options.queueIntervalMs,
      },
      machines: DEBUG_MACHINES.map((m) => m.id),
      groups: recorder.groups(),
      requests: recorder.recentRequests(),
    });
    void tick();

    socket.on('message', (data, isBinary) => {
      let message: { type?: unknown; request?: unknown };
      try {
        if (isBinary) throw new Error('binary');
        message = JSON.parse(String(data)) as typeof message;
        if (message === null || typeof message !== 'object' || Array.isArray(message)) throw new Error('not an object');
      } catch {
        send({ type: 'error', error: { message: 'Messages must be JSON objects like {"type":"select","request":"<id>"}.', code: 'invalid_request' } });
        return;
      }
      if (message.type === 'select') {
        if (message.request === null || message.request === undefined) {
          selected = null;
          send({ type: 'request', id: null, request: null, timeline: [] });
          return;
        }
        if (typeof message.request !== 'string' || message.request.length > 200) {
          send({ type: 'error', error: { message: 'request must be a request id.', code: 'invalid_request' } });
          return;
        }
        selected = message.request;
        // Entries queued for the previous selection are no longer wanted; the detail below has them all.
        outbox = [];
        const detail = recorder.request(selected);
        send({ type: 'request', id: selected, request: detail?.summary ?? null, timeline: detail?.timeline ?? [] });
      } else if (message.type === 'ping') {
        send({ type: 'pong', at: router.clock.now() });
      } else {
        send({ type: 'error', error: { message: "Unknown message type; use 'select' or 'ping'.", code: 'invalid_request' } });
      }
    });
  });
}
