import { describe, expect, it } from 'vitest';
import {
  RedisProtocolError,
  decodeChannelMessage,
  decodeClaimReply,
  decodeEndingFields,
  decodeEndings,
  decodeEnqueueReply,
  CLAIM_RECORD,
  decodeGrantRecords,
  decodeLeaveReply,
  decodePositionReply,
  decodePumpReply,
  decodeReleaseReply,
  decodeRemoveReply,
  decodeRetryAfterReply,
  decodeSnapshotReply,
  decodeSyncReply,
  encodeChannelMessage,
  encodeGrantRecord,
} from '../src/adapters/redis-protocol.js';

// Literal replies as ioredis hands them over: Lua integers as numbers, strings as strings.
const HEAD = [0, 1_000_000, 0];
const GRANT = ['g7', 'req-1', 'dep-a', '120', 999_900, 100, '0', 4];
const GRANT_DECODED = { grantId: 'g7', requestId: 'req-1', deploymentId: 'dep-a', tokens: 120, grantedAt: 999_900, waitedMs: 100, priority: 0, seq: 4 };

/**
 * A flat reply of enqueue, release or pump as includes/grant-step.lua flat() builds it: the fields
 * tab-separated, then NUL and the grants, NUL and the expiries (4 fields each), NUL and the ended cooldowns.
 */
function flat(fields: (string | number)[], lists: { grants?: (string | number)[]; endings?: string[][]; ended?: string[] } = {}): string {
  const endings = (lists.endings ?? []).map((e) => e.join('\t'));
  return [fields.join('\t'), (lists.grants ?? []).join('\t'), endings.join('\t'), (lists.ended ?? []).join('\t')].join('\0');
}
const FLAT_HEAD = ['0', '1000000', '0'];
/** The 3 pump fields of a flat reply (waiting, wake, more), and its lists. */
const PUMP = [2, 1_000_500, 0];
const PUMP_LISTS = {
  grants: GRANT,
  endings: [
    ['x', 'req-2', '', ''],
    ['d', 'req-3', '5', ''],
    ['f', 'req-4', '9', 'upstream 500'],
  ],
  ended: ['dep-b'],
};
const NO_PUMP = ['', '', ''];

describe('script replies', () => {
  it('reads the common head', () => {
    expect(decodeRemoveReply([1, 5, 2, 1])).toEqual({ head: { lost: true, now: 5, reaped: 2 }, removed: true });
    expect(decodePositionReply([...HEAD, -1]).position).toBeNull();
    expect(decodePositionReply([...HEAD, 3]).position).toBe(3);
    expect(decodeRetryAfterReply([...HEAD, 7]).seconds).toBe(7);
    expect(decodeLeaveReply([...HEAD, 4]).left).toBe(4);
  });

  it('reads pump.lua: grants, expiries, displacements and ended cooldowns', () => {
    const { head, pump } = decodePumpReply(flat([...FLAT_HEAD, ...PUMP], PUMP_LISTS));
    expect(head).toEqual({ lost: false, now: 1_000_000, reaped: 0 });
    expect(pump).toEqual({
      waiting: 2,
      wakeAt: 1_000_500,
      more: false,
      grants: [GRANT_DECODED],
      endings: {
        expired: ['req-2'],
        displaced: [
          { id: 'req-3', retryAfterSeconds: 5 },
          { id: 'req-4', retryAfterSeconds: 9, unavailable: 'upstream 500' },
        ],
      },
      cooldownsEnded: ['dep-b'],
    });
    expect(decodePumpReply(flat([...FLAT_HEAD, 0, '', 1])).pump).toEqual({ waiting: 0, wakeAt: null, more: true, grants: [], endings: { expired: [], displaced: [] }, cooldownsEnded: [] });
  });

  it('reads every enqueue.lua layout', () => {
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 1, 12, 3, 2, 40, 1, ...PUMP, 1_000_900], PUMP_LISTS))).toMatchObject({
      outcome: 'accepted',
      seq: 12,
      position: 3,
      round: 2,
      counter: 40,
      etaAt: 1_000_900,
      pump: { waiting: 2, grants: [GRANT_DECODED] },
    });
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 1, 12, 3, 2, 40, 0, ...NO_PUMP, '']))).toMatchObject({ outcome: 'accepted', pump: null, etaAt: null });
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 0, 4, '', '', '', 0, ...NO_PUMP]))).toMatchObject({ outcome: 'refused', reason: 'queue_full', retryAfterSeconds: 4, pump: null });
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 0, 60, 'certain', '', '', 1, ...PUMP], PUMP_LISTS))).toMatchObject({ reason: 'deadline_unreachable', pump: { grants: [GRANT_DECODED] } });
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 0, 30, 'unavailable', 'HTTP 500', '', 0]))).toMatchObject({ reason: 'upstream_unavailable', message: 'HTTP 500' });
    expect(decodeEnqueueReply(flat([...FLAT_HEAD, 0, 'late', '', '', '', 0]))).toEqual({ head: { lost: false, now: 1_000_000, reaped: 0 }, outcome: 'late' });
  });

  it('reads release.lua with and without its grant step', () => {
    expect(decodeReleaseReply(flat([...FLAT_HEAD, 1, 1_005_000, 'server_error', 0, ...NO_PUMP, '', '']))).toEqual({
      head: { lost: false, now: 1_000_000, reaped: 0 },
      released: true,
      cooldownUntil: 1_005_000,
      cooldownReason: 'server_error',
      pump: null,
      upstreamBlockedUntil: null,
      upstreamBlockReason: '',
    });
    expect(decodeReleaseReply(flat([...FLAT_HEAD, 0, '', '', 1, ...PUMP, 1_060_000, 'tpm'], PUMP_LISTS))).toMatchObject({
      released: false,
      cooldownUntil: null,
      pump: { grants: [GRANT_DECODED] },
      upstreamBlockedUntil: 1_060_000,
      upstreamBlockReason: 'tpm',
    });
  });

  it('reads claim.lua and sync.lua', () => {
    expect(decodeClaimReply([...HEAD, GRANT, ['req-9'], ''])).toMatchObject({ grants: [GRANT_DECODED], endings: { expired: ['req-9'], displaced: [] }, nextLeaseEnd: null });
    expect(decodeClaimReply([...HEAD, [], [], 1_002_000]).nextLeaseEnd).toBe(1_002_000);
    expect(decodeSyncReply([...HEAD, ['req-1', 'req-5'], GRANT, ['\0ureq-6\t3']])).toMatchObject({
      waiterIds: ['req-1', 'req-5'],
      grants: [GRANT_DECODED],
      endings: { expired: [], displaced: [{ id: 'req-6', retryAfterSeconds: 3, unreachable: true }] },
    });
  });

  it('reads snapshot.lua per deployment and per waiter', () => {
    const r = decodeSnapshotReply(
      [...HEAD, 2, ['5', 1, '0', 1], 999_000, [1, 3, 300, '', 0, 0, 0, 1_001_000], ['w1', '0', 'acme', 999_000, 0, 1, '', 'w2', '5', '', 999_500, 0, 2, 1_000_300], ['', 1_050_000]],
      2,
    );
    expect(r.depth).toEqual([
      [5, 1],
      [0, 1],
    ]);
    expect(r.oldestEnqueuedAt).toBe(999_000);
    expect(r.deployments).toEqual([
      { inFlight: 1, rpmUsed: 3, tpmUsed: 300, coolingDownUntil: null, upstreamBlockedUntil: null },
      { inFlight: 0, rpmUsed: 0, tpmUsed: 0, coolingDownUntil: 1_001_000, upstreamBlockedUntil: 1_050_000 },
    ]);
    expect(r.waiters.map((w) => [w.id, w.priority, w.tenant, w.etaAt])).toEqual([
      ['w1', 0, 'acme', null],
      ['w2', 5, '', 1_000_300],
    ]);
  });

  it('throws a clear error on a malformed reply instead of returning garbage', () => {
    const bad: [() => unknown, RegExp][] = [
      [() => decodeRemoveReply('OK'), /remove\.lua reply: the reply is "OK", expected an array/],
      [() => decodeRemoveReply([0, 5]), /remove\.lua reply: 2 fields, expected at least 3/],
      [() => decodeRemoveReply([2, 5, 0, 1]), /LOST is 2, expected 1 or 0/],
      [() => decodeRetryAfterReply([0, 'soon', 0, 1]), /NOW is "soon", expected a number/],
      [() => decodePositionReply([...HEAD]), /position\.lua reply: 3 fields, expected at least 4/],
      [() => decodePumpReply([...HEAD, 2, '', 0]), /pump\.lua reply: the reply is \[.*expected a string/],
      [() => decodePumpReply('0\t1000000\t0\t2\t\t0'), /the reply is .*expected fields and 3 lists, NUL-separated/],
      [() => decodePumpReply(flat([...FLAT_HEAD, 2, '', 0], { grants: GRANT.slice(0, 7) })), /grants is .*expected a multiple of 8 fields/],
      [() => decodePumpReply(flat([...FLAT_HEAD, 2, '', 0], { grants: [...GRANT.slice(0, 3), 'lots', ...GRANT.slice(4)] })), /grant tokens is "lots", expected a number/],
      [() => decodePumpReply(flat([...FLAT_HEAD, 2, '', 0], { endings: [['z', 'req', '', '']] })), /entry kind is "z"/],
      [() => decodePumpReply(flat([...FLAT_HEAD, 2, '', 0], { endings: [['x', 'req']] })), /expiries is .*expected a multiple of 4 fields/],
      [() => decodePumpReply(flat([...FLAT_HEAD, 2, ''])), /pump\.lua reply: 5 fields, expected at least 6/],
      [() => decodeEnqueueReply(flat([...FLAT_HEAD, 1, 12, 3, 2, 40, 0, ...NO_PUMP])), /12 fields, expected at least 13/],
      [() => decodeEnqueueReply(flat([...FLAT_HEAD, 0, 4, 'full', '', '', 0, ...NO_PUMP])), /refusal kind is "full"/],
      [() => decodeEnqueueReply(flat([...FLAT_HEAD, 1, 12, 3, 2, 40, 1, ...NO_PUMP, ''])), /waiting is "", expected a number/],
      [() => decodeReleaseReply(flat([...FLAT_HEAD, 1, '', '', 0, ...NO_PUMP])), /10 fields, expected at least 12/],
      [() => decodeClaimReply([...HEAD, [], []]), /claim\.lua reply: 5 fields/],
      [() => decodeSyncReply([...HEAD, [null], [], []]), /waiter ids\[0\] is null, expected a string/],
      [() => decodeSnapshotReply([...HEAD, 0, [], '', [0, 0, 0, ''], [], ['']], 2), /4 fields for each of 2 deployments/],
      [() => decodeSnapshotReply([...HEAD, 0, ['5'], '', [0, 0, 0, ''], [], ['']], 1), /priority, count pairs/],
      [() => decodeSnapshotReply([...HEAD, 0, [], '', [0, 0, 0, ''], [], ['']].slice(0, 8), 1), /8 fields, expected at least 9/],
    ];
    for (const [decode, message] of bad) {
      expect(decode).toThrow(RedisProtocolError);
      expect(decode).toThrow(message);
    }
  });

  it('splits expiry entries by kind', () => {
    const split = {
      expired: ['a'],
      displaced: [
        { id: 'b', retryAfterSeconds: 1 },
        { id: 'c', retryAfterSeconds: 12, unreachable: true },
      ],
    };
    // As claim.lua and sync.lua send them (a list), and as a flat reply does (4 fields each).
    expect(decodeEndings(['a', '\0db\t0', '\0uc\t12'])).toEqual(split);
    expect(decodeEndingFields('x\ta\t\t\td\tb\t0\t\tu\tc\t12\t')).toEqual(split);
  });
});

describe('channel messages', () => {
  it('round-trips each kind', () => {
    const records = [encodeGrantRecord(GRANT_DECODED), encodeGrantRecord({ ...GRANT_DECODED, grantId: 'g8' })].join('\0');
    for (const m of [{ kind: 'grants', model: 'gpt-4o', records }, { kind: 'mail', model: 'gpt-4o' }, { kind: 'changed', model: 'a\0b' }] as const) {
      expect(decodeChannelMessage(encodeChannelMessage(m))).toEqual(m);
    }
    // The bytes includes/mail.lua notifyAll and leave.lua publish.
    expect(encodeChannelMessage({ kind: 'grants', model: 'm', records: 'r' })).toBe('gm\0r');
    expect(encodeChannelMessage({ kind: 'mail', model: 'm' })).toBe('mm');
    expect(encodeChannelMessage({ kind: 'changed', model: 'm' })).toBe('cm');
    expect(decodeGrantRecords(records)).toEqual({ grants: [GRANT_DECODED, { ...GRANT_DECODED, grantId: 'g8' }], unreadable: 0, claim: false });
  });

  it('reads a last record CLAIM_RECORD as "claim your mail too", after the grants it follows', () => {
    const good = encodeGrantRecord(GRANT_DECODED);
    // The bytes includes/mail.lua notifyAll publishes when the script left the receiver expiries as well.
    expect(decodeGrantRecords(`${good}\0m`)).toEqual({ grants: [GRANT_DECODED], unreadable: 0, claim: true });
    expect(CLAIM_RECORD).toBe('m');
    // Only as the last record: elsewhere it is an unreadable record (which makes the receiver claim too).
    expect(decodeGrantRecords(`m\0${good}`)).toEqual({ grants: [GRANT_DECODED], unreadable: 1, claim: false });
  });

  it('refuses what is not a message of ours', () => {
    expect(() => decodeChannelMessage('')).toThrow(/unknown kind ""/);
    expect(() => decodeChannelMessage('xmodel')).toThrow(/unknown kind "x"/);
    expect(() => decodeChannelMessage('gmodel-without-records')).toThrow(/without NUL/);
    expect(() => encodeChannelMessage({ kind: 'grants', model: 'a\0b', records: '' })).toThrow(/contains NUL/);
  });

  it('counts unreadable grant records (the receiver claims its mail) and keeps the readable ones', () => {
    const good = encodeGrantRecord(GRANT_DECODED);
    expect(decodeGrantRecords([good, 'g9\treq\tdep', good.replace('\t120\t', '\tmany\t')].join('\0'))).toEqual({ grants: [GRANT_DECODED], unreadable: 2, claim: false });
  });
});
