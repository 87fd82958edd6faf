--[[
enqueue.lua: adds a waiter to the group's global queue (or refuses it: queue full), atomically.
KEYS: the group layout of lib.lua (KEYS[1..12] group keys, then 4 per deployment).
ARGV: the common prefix of lib.lua (ARGV[1 .. A-1]), then
  ARGV[A]   request id                 ARGV[A+1] priority          ARGV[A+2] tenant
  ARGV[A+3] enqueuedAt (caller ms)     ARGV[A+4] deadline (caller ms)
  ARGV[A+5] tokens (tpm estimate)      ARGV[A+6] seq or '' (a retry keeps its seq and round)
  ARGV[A+7] round or ''                ARGV[A+8] now (caller ms)
  ARGV[A+9] rank (queue-order.ts orderRank, computed by the caller on enqueuedAt moved to server time
            by its stable clock offset), or '' to compute it here
Returns {LOST, NOW, REAPED, 1, seq, position, round} or {LOST, NOW, REAPED, 0, retryAfterSeconds} (queue
full); an error reply when the id is already waiting.
]]
local id, prio, tenant = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local enqueuedAt, deadline = tonumber(ARGV[A + 3]), tonumber(ARGV[A + 4])
local tokens, seqArg, roundArg, callerNow = ARGV[A + 5], ARGV[A + 6], ARGV[A + 7], tonumber(ARGV[A + 8])
local rankArg = ARGV[A + 9]

if redis.call('HEXISTS', K.waiters, id) == 1 then
  return redis.error_reply('request ' .. id .. ' is already waiting')
end
-- The owner of a waiter must hold a lease, or nobody could reclaim the waiter if the owner died.
touchLease()
local retry = seqArg ~= ''
-- A retry was admitted before: it re-enters even when the queue is full, at its old place.
if not retry and redis.call('HLEN', K.waiters) >= S.maxq then
  local seconds = retryAfterSeconds()
  finish()
  return { LOST, int(NOW), REAPED, 0, int(seconds) }
end

local seq
if retry then seq = tonumber(seqArg) else seq = redis.call('INCR', K.seq) end
local round
if roundArg ~= '' then
  round = tonumber(roundArg)
else
  -- Fair rounds: a tenant's next request at this priority goes one round after its previous one,
  -- and never before the round being served.
  local tkey = 't\0' .. prio .. '\0' .. tenant
  local r = redis.call('HMGET', K.rounds, 's\0' .. prio, tkey)
  local served, last = tonumber(r[1]) or 0, tonumber(r[2])
  if last == nil then round = served else round = math.max(last + 1, served) end
  redis.call('HSET', K.rounds, tkey, int(round))
end

-- Caller times become server times by their distance from the caller's now (clock skew cancels out).
local enq = NOW - math.max(0, callerNow - enqueuedAt)
local dl = NOW + (deadline - callerNow)
local rank = tonumber(rankArg)
if rank == nil then
  -- queue-order.ts orderRank: priority, or with aging priority * agingMs + enqueuedAt.
  rank = tonumber(prio)
  if S.aging then rank = rank * S.aging + enq end
end

local m = member(round, seq, id)
redis.call('ZADD', K.queue, string.format('%.17g', rank), m)
redis.call('ZADD', K.deadlines, int(dl), id)
redis.call('ZADD', K.enqueued, int(enq), id)
redis.call('HSET', K.waiters, id,
  ME .. '\t' .. prio .. '\t' .. int(enq) .. '\t' .. int(dl) .. '\t' .. tokens .. '\t' .. int(seq) .. '\t' .. int(round) .. '\t' .. tenant)
addDepth(prio, 1)
local position = redis.call('ZRANK', K.queue, m)
finish()
return { LOST, int(NOW), REAPED, 1, int(seq), position, int(round) }
