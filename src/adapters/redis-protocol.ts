/**
 * The wire format between the Lua scripts (src/adapters/redis/*.lua) and RedisStore: one typed decoder
 * per script reply, and the pub/sub channel messages (includes/mail.lua notifyAll, leave.lua). Each decoder is
 * documented against the "Returns" line of the script header it reads; it checks every field it reads
 * and throws a RedisProtocolError naming the script, the field and the value instead of returning
 * garbage. Times stay on the Redis clock (server ms): moving them to the caller's clock is the store's job.
 * Pure functions: nothing here touches a connection.
 */
import type { Displaced, Grant } from '../machines/scheduler-store.js';

/** A reply or message that does not have the layout its script documents. */
export class RedisProtocolError extends Error {
  override readonly name = 'RedisProtocolError';
}

/** Every script's reply starts {LOST, NOW, REAPED} (lib.lua). */
export interface ReplyHead {
  /** The caller's lease was gone before this script renewed it. */
  lost: boolean;
  /** The script's clock (server ms). */
  now: number;
  /** Instances reaped by this script (their waiters and grants removed). */
  reaped: number;
}

/** The grant step of a reply (pump.lua after its head: 3 fields, then its lists); grants' `grantedAt` is server ms. */
export interface PumpReply {
  waiting: number;
  /** Next wake (server ms), or null. */
  wakeAt: number | null;
  /** The batch cap was reached: more may be grantable now. */
  more: boolean;
  grants: Grant[];
  endings: Endings;
  cooldownsEnded: string[];
}

/** The expiry list of a reply, split (includes/mail.lua claimMail): plain ids expired; NUL-marked entries displaced. */
export interface Endings {
  expired: string[];
  displaced: Displaced[];
}

export type EnqueueReply =
  | { head: ReplyHead; outcome: 'late' }
  | { head: ReplyHead; outcome: 'accepted'; seq: number; position: number; round: number; counter: number; pump: PumpReply | null; etaAt: number | null }
  | {
      head: ReplyHead;
      outcome: 'refused';
      reason: 'queue_full' | 'deadline_unreachable' | 'upstream_unavailable';
      retryAfterSeconds: number;
      /** The last upstream error ('' unless upstream_unavailable). */
      message: string;
      pump: PumpReply | null;
    };

export interface ReleaseReply {
  head: ReplyHead;
  released: boolean;
  cooldownUntil: number | null;
  cooldownReason: string;
  pump: PumpReply | null;
  upstreamBlockedUntil: number | null;
  upstreamBlockReason: string;
}

export interface ClaimReply {
  head: ReplyHead;
  grants: Grant[];
  endings: Endings;
  /** The earliest other lease's end (server ms), or null. */
  nextLeaseEnd: number | null;
}

export interface SyncReply {
  head: ReplyHead;
  waiterIds: string[];
  grants: Grant[];
  endings: Endings;
}

export interface SnapshotDeployment {
  inFlight: number;
  rpmUsed: number;
  tpmUsed: number;
  coolingDownUntil: number | null;
  upstreamBlockedUntil: number | null;
}

export interface SnapshotWaiter {
  id: string;
  priority: number;
  tenant: string;
  enqueuedAt: number;
  round: number;
  seq: number;
  etaAt: number | null;
}

export interface SnapshotReply {
  head: ReplyHead;
  waiting: number;
  /** [priority, count], in reply order. */
  depth: [number, number][];
  oldestEnqueuedAt: number | null;
  deployments: SnapshotDeployment[];
  waiters: SnapshotWaiter[];
}

// Field readers ------------------------------------------------------------------------------------------

function fail(where: string, field: string, value: unknown, expected: string): never {
  const shown = value === undefined ? 'missing' : JSON.stringify(value);
  throw new RedisProtocolError(`${where}: ${field} is ${shown}, expected ${expected}`);
}

function array(where: string, v: unknown, field = 'the reply'): unknown[] {
  if (!Array.isArray(v)) fail(where, field, v, 'an array');
  return v;
}

/** Lua numbers arrive as integers, numbers built into strings as strings: both are read. */
function num(where: string, v: unknown, field: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n)) fail(where, field, v, 'a number');
  return n;
}

function optNum(where: string, v: unknown, field: string): number | null {
  return v === '' ? null : num(where, v, field);
}

function flag(where: string, v: unknown, field: string): boolean {
  if (v === 1 || v === '1') return true;
  if (v === 0 || v === '0') return false;
  return fail(where, field, v, '1 or 0');
}

function str(where: string, v: unknown, field: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return fail(where, field, v, 'a string');
}

/** A list inside a reply (claim, sync): an array, or '' for an empty one. */
function list(where: string, v: unknown, field: string): unknown[] {
  return v === '' ? [] : array(where, v, field);
}

function strs(where: string, v: unknown, field: string): string[] {
  return list(where, v, field).map((x, i) => str(where, x, `${field}[${i}]`));
}

function atLeast(where: string, r: unknown[], n: number): void {
  if (r.length < n) throw new RedisProtocolError(`${where}: ${r.length} fields, expected at least ${n}`);
}

function decodeHead(where: string, r: unknown[]): ReplyHead {
  atLeast(where, r, 3);
  return { lost: flag(where, r[0], 'LOST'), now: num(where, r[1], 'NOW'), reaped: num(where, r[2], 'REAPED') };
}

/** A grant from its 8 fields (includes/waiters-grants.lua pushGrant: id, request id, deployment, tokens, at, waited, priority, seq). */
function grantAt(where: string, v: readonly unknown[], i: number): Grant {
  return {
    grantId: str(where, v[i], 'grant id'),
    requestId: str(where, v[i + 1], 'grant request id'),
    deploymentId: str(where, v[i + 2], 'grant deployment'),
    tokens: num(where, v[i + 3], 'grant tokens'),
    grantedAt: num(where, v[i + 4], 'grant time'),
    waitedMs: Math.max(0, num(where, v[i + 5], 'grant waited ms')),
    priority: num(where, v[i + 6], 'grant priority'),
    seq: num(where, v[i + 7], 'grant seq'),
  };
}

function grants(where: string, v: unknown): Grant[] {
  const flat = list(where, v, 'grants');
  if (flat.length % 8 !== 0) fail(where, 'grants', v, 'a multiple of 8 fields');
  const out: Grant[] = [];
  for (let i = 0; i < flat.length; i += 8) out.push(grantAt(where, flat, i));
  return out;
}

/**
 * The expiry list of a reply (includes/mail.lua claimMail): plain ids are expiries; entries NUL + kind + id + tab
 * + seconds are waiters displaced by a better arrival (kind d), whose deadline became certainly
 * unreachable (kind u), or refused because every deployment fails (kind f: + tab + the last error).
 */
export function decodeEndings(entries: readonly string[], where = 'expiry list'): Endings {
  const expired: string[] = [];
  const displaced: Displaced[] = [];
  for (const e of entries) {
    if (e.charCodeAt(0) !== 0) {
      expired.push(e);
      continue;
    }
    const kind = e[1];
    if (kind !== 'd' && kind !== 'u' && kind !== 'f') fail(where, 'entry kind', e, "NUL + 'd', 'u' or 'f'");
    const fields = e.slice(2).split('\t');
    if (fields[0] === '') fail(where, 'displaced id', e, 'an id');
    const d: Displaced = { id: fields[0], retryAfterSeconds: Math.max(1, Number(fields[1]) || 1) };
    if (kind === 'u') d.unreachable = true;
    if (kind === 'f') d.unavailable = fields.slice(2).join(' ');
    displaced.push(d);
  }
  return { expired, displaced };
}

/**
 * A reply of enqueue, release or pump (includes/grant-step.lua flat): ONE string, its fields
 * tab-separated, then NUL and the grant step's grants, NUL and its expiries, NUL and its ended cooldowns.
 */
interface FlatReply {
  fields: string[];
  grants: string;
  endings: string;
  ended: string;
}

function flatReply(where: string, reply: unknown): FlatReply {
  if (typeof reply !== 'string') fail(where, 'the reply', reply, 'a string');
  const parts = reply.split('\0');
  if (parts.length !== 4) fail(where, 'the reply', reply, 'fields and 3 lists, NUL-separated');
  return { fields: parts[0].split('\t'), grants: parts[1], endings: parts[2], ended: parts[3] };
}

/** A tab-separated list of a flat reply; '' is an empty one. */
const tabList = (s: string): string[] => (s === '' ? [] : s.split('\t'));

/** The grants of a flat reply: 8 fields each (includes/waiters-grants.lua pushGrant). */
function flatGrants(where: string, s: string): Grant[] {
  const flat = tabList(s);
  if (flat.length % 8 !== 0) fail(where, 'grants', s, 'a multiple of 8 fields');
  const out: Grant[] = [];
  for (let i = 0; i < flat.length; i += 8) out.push(grantAt(where, flat, i));
  return out;
}

/**
 * The expiries of a flat reply (includes/grant-step.lua endingFields): 4 fields each, kind, id,
 * Retry-After seconds, message; kind x expired, d displaced by a better arrival, u deadline certainly
 * unreachable, f every deployment fails (the message: the last upstream error).
 */
export function decodeEndingFields(s: string, where = 'expiry list'): Endings {
  const f = tabList(s);
  if (f.length % 4 !== 0) fail(where, 'expiries', s, 'a multiple of 4 fields');
  const expired: string[] = [];
  const displaced: Displaced[] = [];
  for (let i = 0; i < f.length; i += 4) {
    const [kind, id] = [f[i], f[i + 1]];
    if (id === '') fail(where, 'expired id', s, 'an id');
    if (kind === 'x') {
      expired.push(id);
      continue;
    }
    if (kind !== 'd' && kind !== 'u' && kind !== 'f') fail(where, 'entry kind', kind, "'x', 'd', 'u' or 'f'");
    const d: Displaced = { id, retryAfterSeconds: Math.max(1, Number(f[i + 2]) || 1) };
    if (kind === 'u') d.unreachable = true;
    if (kind === 'f') d.unavailable = f[i + 3];
    displaced.push(d);
  }
  return { expired, displaced };
}

/** The grant step of a flat reply: its 3 fields from fields[i] (waiting, wake or '', more), then its lists. */
function pumpAt(where: string, r: FlatReply, i: number): PumpReply {
  atLeast(where, r.fields, i + 3);
  return {
    waiting: num(where, r.fields[i], 'waiting'),
    wakeAt: optNum(where, r.fields[i + 1], 'next wake'),
    more: flag(where, r.fields[i + 2], 'more'),
    grants: flatGrants(where, r.grants),
    endings: decodeEndingFields(r.endings, where),
    cooldownsEnded: tabList(r.ended),
  };
}

// Script replies ------------------------------------------------------------------------------------------

/** pump.lua: LOST, NOW, REAPED, waiting, next wake or '', more; then its lists (a flat reply). */
export function decodePumpReply(reply: unknown): { head: ReplyHead; pump: PumpReply } {
  const where = 'pump.lua reply';
  const r = flatReply(where, reply);
  return { head: decodeHead(where, r.fields), pump: pumpAt(where, r, 3) };
}

/**
 * enqueue.lua (a flat reply): …, 1, seq, position, round, grant counter, pumped, pump(3), eta or ''
 * (accepted); …, 0, retryAfterSeconds, '' | 'certain', '', '', pumped, pump(3) (queue full | deadline
 * unreachable); …, 0, retryAfterSeconds, 'unavailable', last error, '', 0 and …, 0, 'late', '', '', '', 0.
 */
export function decodeEnqueueReply(reply: unknown): EnqueueReply {
  const where = 'enqueue.lua reply';
  const fr = flatReply(where, reply);
  const r = fr.fields;
  const head = decodeHead(where, r);
  atLeast(where, r, 9);
  if (r[4] === 'late') return { head, outcome: 'late' };
  const pumped = flag(where, r[8], 'pumped');
  const pump = pumped ? pumpAt(where, fr, 9) : null;
  if (flag(where, r[3], 'accepted')) {
    atLeast(where, r, 13);
    return {
      head,
      outcome: 'accepted',
      seq: num(where, r[4], 'seq'),
      position: num(where, r[5], 'position'),
      round: num(where, r[6], 'round'),
      counter: num(where, r[7], 'grant counter'),
      pump,
      etaAt: optNum(where, r[12], 'estimated grant time'),
    };
  }
  const retryAfterSeconds = num(where, r[4], 'retry-after seconds');
  const kind = r[5];
  if (kind === 'unavailable') {
    return { head, outcome: 'refused', reason: 'upstream_unavailable', retryAfterSeconds, message: str(where, r[6], 'last upstream error'), pump };
  }
  if (kind !== '' && kind !== 'certain') fail(where, 'refusal kind', kind, "'', 'certain' or 'unavailable'");
  return { head, outcome: 'refused', reason: kind === 'certain' ? 'deadline_unreachable' : 'queue_full', retryAfterSeconds, message: '', pump };
}

/** release.lua (a flat reply): …, released, cooldown until or '', reason or '', pumped, pump(3), blocked until or '', reason or ''. */
export function decodeReleaseReply(reply: unknown): ReleaseReply {
  const where = 'release.lua reply';
  const fr = flatReply(where, reply);
  const r = fr.fields;
  const head = decodeHead(where, r);
  atLeast(where, r, 12);
  return {
    head,
    released: flag(where, r[3], 'released'),
    cooldownUntil: optNum(where, r[4], 'cooldown until'),
    cooldownReason: str(where, r[5], 'cooldown reason'),
    pump: flag(where, r[6], 'pumped') ? pumpAt(where, fr, 7) : null,
    upstreamBlockedUntil: optNum(where, r[10], 'upstream-blocked until'),
    upstreamBlockReason: str(where, r[11], 'upstream block reason'),
  };
}

/** claim.lua: {LOST, NOW, REAPED, grants, expired ids, the earliest other lease's end or ''}. */
export function decodeClaimReply(reply: unknown): ClaimReply {
  const where = 'claim.lua reply';
  const r = array(where, reply);
  const head = decodeHead(where, r);
  atLeast(where, r, 6);
  return { head, grants: grants(where, r[3]), endings: decodeEndings(strs(where, r[4], 'expired'), where), nextLeaseEnd: optNum(where, r[5], 'next lease end') };
}

/** sync.lua: {LOST, NOW, REAPED, waiter ids, grants, expired ids}. */
export function decodeSyncReply(reply: unknown): SyncReply {
  const where = 'sync.lua reply';
  const r = array(where, reply);
  const head = decodeHead(where, r);
  atLeast(where, r, 6);
  return { head, waiterIds: strs(where, r[3], 'waiter ids'), grants: grants(where, r[4]), endings: decodeEndings(strs(where, r[5], 'expired'), where) };
}

function oneCount<K extends string>(script: string, key: K, reply: unknown): { head: ReplyHead } & Record<K, number> {
  const where = `${script} reply`;
  const r = array(where, reply);
  const head = decodeHead(where, r);
  atLeast(where, r, 4);
  return { head, [key]: num(where, r[3], key) } as { head: ReplyHead } & Record<K, number>;
}

/** remove.lua: {LOST, NOW, REAPED, removed 1 | 0}. */
export function decodeRemoveReply(reply: unknown): { head: ReplyHead; removed: boolean } {
  const where = 'remove.lua reply';
  const r = array(where, reply);
  const head = decodeHead(where, r);
  atLeast(where, r, 4);
  return { head, removed: flag(where, r[3], 'removed') };
}

/** position.lua: {LOST, NOW, REAPED, position or -1}; null when not waiting. */
export function decodePositionReply(reply: unknown): { head: ReplyHead; position: number | null } {
  const { head, position } = oneCount('position.lua', 'position', reply);
  return { head, position: position < 0 ? null : position };
}

/** retry_after.lua: {LOST, NOW, REAPED, seconds}. */
export function decodeRetryAfterReply(reply: unknown): { head: ReplyHead; seconds: number } {
  return oneCount('retry_after.lua', 'seconds', reply);
}

/** leave.lua: {LOST, NOW, REAPED, items removed or released}. */
export function decodeLeaveReply(reply: unknown): { head: ReplyHead; left: number } {
  return oneCount('leave.lua', 'left', reply);
}

/**
 * snapshot.lua: {LOST, NOW, REAPED, waiting, depth (priority, count pairs), oldest enqueuedAt or '',
 * deployments (4 each: inflight, rpm used, tpm used, cooling-down-until or ''), waiters (7 each: id,
 * priority, tenant, enqueuedAt, round, seq, eta or ''), upstream-blocked until or '' per deployment}.
 * `deployments`: how many the group has (the reply must carry each).
 */
export function decodeSnapshotReply(reply: unknown, deployments: number): SnapshotReply {
  const where = 'snapshot.lua reply';
  const r = array(where, reply);
  const head = decodeHead(where, r);
  atLeast(where, r, 9);
  const depthFlat = array(where, r[4], 'depth');
  if (depthFlat.length % 2 !== 0) fail(where, 'depth', r[4], 'priority, count pairs');
  const depth: [number, number][] = [];
  for (let i = 0; i < depthFlat.length; i += 2) depth.push([num(where, depthFlat[i], 'depth priority'), num(where, depthFlat[i + 1], 'depth count')]);
  const usage = array(where, r[6], 'deployments');
  const blocked = array(where, r[8], 'upstream-blocked');
  if (usage.length !== deployments * 4) fail(where, 'deployments', r[6], `4 fields for each of ${deployments} deployments`);
  if (blocked.length !== deployments) fail(where, 'upstream-blocked', r[8], `one field for each of ${deployments} deployments`);
  const deps: SnapshotDeployment[] = [];
  for (let i = 0; i < deployments; i++) {
    deps.push({
      inFlight: num(where, usage[i * 4], 'in flight'),
      rpmUsed: num(where, usage[i * 4 + 1], 'rpm used'),
      tpmUsed: num(where, usage[i * 4 + 2], 'tpm used'),
      coolingDownUntil: optNum(where, usage[i * 4 + 3], 'cooling down until'),
      upstreamBlockedUntil: optNum(where, blocked[i], 'upstream-blocked until'),
    });
  }
  const list = array(where, r[7], 'waiters');
  if (list.length % 7 !== 0) fail(where, 'waiters', r[7], 'a multiple of 7 fields');
  const waiters: SnapshotWaiter[] = [];
  for (let i = 0; i < list.length; i += 7) {
    waiters.push({
      id: str(where, list[i], 'waiter id'),
      priority: num(where, list[i + 1], 'waiter priority'),
      tenant: str(where, list[i + 2], 'waiter tenant'),
      enqueuedAt: num(where, list[i + 3], 'waiter enqueuedAt'),
      round: num(where, list[i + 4], 'waiter round'),
      seq: num(where, list[i + 5], 'waiter seq'),
      etaAt: optNum(where, list[i + 6], 'waiter eta'),
    });
  }
  return { head, waiting: num(where, r[3], 'waiting'), depth, oldestEnqueuedAt: optNum(where, r[5], 'oldest enqueuedAt'), deployments: deps, waiters };
}

// Channel messages ----------------------------------------------------------------------------------------

/**
 * A message on an instance's channel (includes/mail.lua notifyAll, leave.lua):
 * 'g' + model + NUL + grant records (the 8 pushGrant fields tab-separated, NUL between records): grants
 * for the receiver's waiters, optionally followed by the record CLAIM_RECORD (claim your mail as well);
 * 'm' + model: claim your mail; 'c' + model: capacity changed, pump again.
 */
export type ChannelMessage = { kind: 'grants'; model: string; records: string } | { kind: 'mail' | 'changed'; model: string };

export function encodeChannelMessage(m: ChannelMessage): string {
  if (m.kind === 'grants') {
    if (m.model.includes('\0')) throw new RedisProtocolError(`channel message: model ${JSON.stringify(m.model)} contains NUL`);
    return `g${m.model}\0${m.records}`;
  }
  return (m.kind === 'mail' ? 'm' : 'c') + m.model;
}

export function decodeChannelMessage(message: string): ChannelMessage {
  const tag = message[0];
  if (tag === 'g') {
    const cut = message.indexOf('\0');
    if (cut < 0) throw new RedisProtocolError(`channel message: a grants message without NUL after its model: ${JSON.stringify(message.slice(0, 80))}`);
    return { kind: 'grants', model: message.slice(1, cut), records: message.slice(cut + 1) };
  }
  if (tag === 'm' || tag === 'c') return { kind: tag === 'm' ? 'mail' : 'changed', model: message.slice(1) };
  throw new RedisProtocolError(`channel message: unknown kind ${JSON.stringify(tag ?? '')} (expected 'g', 'm' or 'c')`);
}

/** One grant record as notifyAll sends it (includes/mail.lua mailGrant). */
export function encodeGrantRecord(g: Grant): string {
  return [g.grantId, g.requestId, g.deploymentId, g.tokens, g.grantedAt, g.waitedMs, g.priority, g.seq].join('\t');
}

/**
 * The last record of a grants message whose script also left the receiver other mail (expiries,
 * displacements): deliver the grants from the message, then claim the rest. A receiver that does not
 * know it counts it unreadable, and claims its mail all the same.
 */
export const CLAIM_RECORD = 'm';

/**
 * The records of a grants message. A record that is not 8 readable fields is counted in `unreadable`
 * rather than thrown: the receiver then claims its mail, which holds every grant the message carried.
 * `claim`: the message ended with CLAIM_RECORD.
 */
export function decodeGrantRecords(records: string): { grants: Grant[]; unreadable: number; claim: boolean } {
  const out: Grant[] = [];
  let unreadable = 0;
  let claim = false;
  const list = records.split('\0');
  if (list.length > 1 && list[list.length - 1] === CLAIM_RECORD) {
    claim = true;
    list.pop();
  }
  for (const rec of list) {
    const f = rec.split('\t');
    if (f.length !== 8) {
      unreadable += 1;
      continue;
    }
    try {
      out.push(grantAt('grant record', f, 0));
    } catch {
      unreadable += 1;
    }
  }
  return { grants: out, unreadable, claim };
}
