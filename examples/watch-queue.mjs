#!/usr/bin/env node
// Watches a Triage gateway's queue live and prints each request's journey and position.
//   node examples/watch-queue.mjs [ws://127.0.0.1:4000/queue/events] [--key KEY] [--models a,b]
// Positions are derived from the stream: the snapshot gives the waiters, each request.queued event
// gives (priority, seq) and each dispatch/timeout/cancel removes one; sorting by that key gives the order.
import WebSocket from 'ws';

const args = process.argv.slice(2);
const url = new URL(args.find((a) => a.startsWith('ws')) ?? 'ws://127.0.0.1:4000/queue/events');
const keyIndex = args.indexOf('--key');
const modelsIndex = args.indexOf('--models');
if (modelsIndex !== -1) url.searchParams.set('models', args[modelsIndex + 1]);
const headers = keyIndex !== -1 ? { authorization: `Bearer ${args[keyIndex + 1]}` } : {};

/** model → Map(request id → {priority, round, seq}) */
const waiting = new Map();
const order = (a, b) => a.priority - b.priority || a.round - b.round || a.seq - b.seq;
const positionOf = (model, id) => {
  const entries = [...(waiting.get(model) ?? new Map()).entries()].sort((a, b) => order(a[1], b[1]));
  return entries.findIndex(([key]) => key === id);
};

const socket = new WebSocket(url, { headers });
socket.on('message', (data) => {
  const m = JSON.parse(String(data));
  switch (m.type) {
    case 'snapshot':
      for (const g of m.models) {
        console.log(`${g.model}: ${g.waiting} waiting, ${g.inFlight} in flight`);
        waiting.set(g.model, new Map(g.waiters.map((w) => [w.id, { priority: w.priority, round: w.round, seq: w.seq }])));
      }
      break;
    case 'request.queued': {
      if (!waiting.has(m.model)) waiting.set(m.model, new Map());
      waiting.get(m.model).set(m.id, { priority: m.priority, round: m.round, seq: m.arrivalSeq });
      console.log(`queued     ${m.id.slice(0, 8)} ${m.model} p=${m.priority} position ${positionOf(m.model, m.id)}`);
      break;
    }
    case 'request.dispatched':
    case 'request.timeout':
    case 'request.cancelled':
    case 'request.rejected':
      waiting.get(m.model)?.delete(m.id);
      console.log(`${m.type.slice(8).padEnd(10)} ${m.id.slice(0, 8)} ${m.model}${m.deployment ? ` → ${m.deployment} after ${m.waitedMs} ms` : ''}`);
      break;
    case 'request.done':
      console.log(`done       ${m.id.slice(0, 8)} ${m.model} in ${m.durationMs} ms, ${m.tokens?.total_tokens ?? '?'} tokens`);
      break;
    case 'lagged':
      console.log(`(missed ${m.dropped} events: this client was too slow)`);
      break;
    default:
      console.log(m.type, JSON.stringify(m));
  }
});
socket.on('close', (code, reason) => console.log(`closed ${code} ${reason}`));
socket.on('error', (e) => console.error(e.message));
