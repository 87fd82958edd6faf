/**
 * `GET /queue/events`: the queue's events over a WebSocket, as the actors emit them.
 *
 * On connect the client receives `{"type":"snapshot"}` with every visible model group, then one JSON
 * message per event in the order they happened. A slow reader never slows the gateway: while a
 * connection has more than `maxBufferedBytes` unsent, its events are dropped and counted, and once it
 * catches up it is told `{"type":"lagged","dropped":N}`; a connection that stays behind past
 * `maxLagMs` is closed with code 1013 ("try again later").
 */
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { toTriageError } from '../errors.js';
import type { QueueEvent } from '../events.js';
import type { Router } from '../router.js';
import type { Caller } from './auth.js';
import { accepts, FILTER_QUERY_PARAMS, parseFilter, type EventFilter, type FilterInput } from './event-filter.js';
import { unknownQueryParam } from './query-params.js';
import { errorBody } from './http-errors.js';

export interface EventStreamOptions {
  maxBufferedBytes: number;
  maxLagMs: number;
  /** Largest client message accepted (subscribe messages are small). */
  maxMessageBytes: number;
}

export const DEFAULT_EVENT_STREAM_OPTIONS: EventStreamOptions = { maxBufferedBytes: 1 << 20, maxLagMs: 30_000, maxMessageBytes: 16 * 1024 };

function send(socket: WebSocket, message: unknown): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}

export function registerEventsRoute(app: FastifyInstance, router: Router, options: EventStreamOptions = DEFAULT_EVENT_STREAM_OPTIONS): void {
  app.get('/queue/events', { websocket: true }, (socket: WebSocket, request) => {
    const caller = (request as unknown as { caller: Caller }).caller;
    let filter: EventFilter;
    // An unknown query parameter closes the socket with a reason naming it (a close reason holds 123 bytes).
    const unknown = unknownQueryParam(request.query, FILTER_QUERY_PARAMS);
    if (unknown !== undefined) {
      const message = `Unknown query parameter '${unknown.slice(0, 40)}'. Accepted: ${[...FILTER_QUERY_PARAMS].join(', ')}.`;
      send(socket, { type: 'error', error: { message, type: 'invalid_request_error', param: unknown.slice(0, 100), code: 'invalid_request' } });
      socket.close(1008, Buffer.byteLength(message) <= 123 ? message : `unknown query parameter '${unknown.slice(0, 20)}'`);
      return;
    }
    try {
      filter = parseFilter(request.query as Record<string, unknown>, (m) => router.groupNameFor(m));
    } catch (e) {
      send(socket, { type: 'error', ...errorBody(toTriageError(e), app.redactSecrets) });
      socket.close(1008, 'invalid filter');
      return;
    }

    let dropped = 0;
    let lagSince: number | null = null;
    // Until the snapshot is out, events wait behind it so the client sees snapshot first.
    let pending: QueueEvent[] | null = [];
    /** Runs when a message has left the buffer: the moment a lagging client has caught up. */
    const onFlushed = () => {
      if (dropped > 0 && socket.bufferedAmount <= options.maxBufferedBytes && socket.readyState === socket.OPEN) {
        socket.send(JSON.stringify({ type: 'lagged', dropped }));
        dropped = 0;
        lagSince = null;
      }
    };
    const unsubscribe = router.events.subscribe((event: QueueEvent) => {
      if (!accepts(filter, caller, event)) return;
      if (pending !== null) {
        if (pending.length < 10_000) pending.push(event);
        else dropped += 1;
        return;
      }
      if (socket.bufferedAmount > options.maxBufferedBytes) {
        dropped += 1;
        lagSince ??= Date.now();
        if (Date.now() - lagSince > options.maxLagMs) socket.close(1013, 'subscriber too slow');
        return;
      }
      onFlushed();
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event), onFlushed);
    });

    const flushPending = () => {
      const queued = pending ?? [];
      pending = null;
      for (const e of queued) send(socket, e);
      if (dropped > 0) {
        send(socket, { type: 'lagged', dropped });
        dropped = 0;
      }
    };
    void router.queueStatus().then(
      (models) => {
        const visible = filter.models ? models.filter((m) => filter.models!.has(m.model)) : models;
        // A key that is not the master sees only its own waiters.
        const shown = caller.kind === 'key' ? visible.map((m) => ({ ...m, waiters: m.waiters.filter((w) => w.tenant === caller.name) })) : visible;
        send(socket, { type: 'snapshot', at: router.clock.now(), seq: router.events.lastSeq, models: shown });
        flushPending();
      },
      (e: unknown) => {
        send(socket, { type: 'error', ...errorBody(toTriageError(e), app.redactSecrets) });
        flushPending();
      },
    );

    socket.on('message', (data, isBinary) => {
      let message: { type?: unknown } & Record<string, unknown>;
      try {
        if (isBinary) throw new Error('binary');
        message = JSON.parse(String(data)) as typeof message;
        if (message === null || typeof message !== 'object' || Array.isArray(message)) throw new Error('not an object');
      } catch {
        send(socket, { type: 'error', error: { message: 'Messages must be JSON objects like {"type":"subscribe","models":["m"]}.', type: 'invalid_request_error', param: null, code: 'invalid_request' } });
        return;
      }
      if (message.type === 'subscribe') {
        try {
          filter = parseFilter(message as FilterInput, (m) => router.groupNameFor(m));
          send(socket, { type: 'subscribed', filter: { models: filter.models ? [...filter.models] : null, types: filter.types ? [...filter.types] : null, request: filter.request ?? null, mine: filter.mine } });
        } catch (e) {
          send(socket, { type: 'error', ...errorBody(toTriageError(e), app.redactSecrets) });
        }
      } else if (message.type === 'ping') {
        send(socket, { type: 'pong', at: router.clock.now() });
      } else {
        send(socket, { type: 'error', error: { message: "Unknown message type; use 'subscribe' or 'ping'.", type: 'invalid_request_error', param: 'type', code: 'invalid_request' } });
      }
    });
    // While this client is connected the router reports waiters' positions (request.position).
    const unwatch = router.watchPositions();
    socket.on('close', () => {
      unsubscribe();
      unwatch();
    });
    socket.on('error', () => {
      unsubscribe();
      unwatch();
    });
  });
}
