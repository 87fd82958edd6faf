--[[
enqueue.lua: adds a waiter to the group's queue (or refuses it: queue full), in one atomic step.
KEYS: the group layout of lib.lua (KEYS[1..14] group keys, then 4 per deployment).
ARGV: the common prefix of lib.lua (ARGV[1 .. A-1]), then
  ARGV[A]   request id                 ARGV[A+1] priority          ARGV[A+2] tenant
  ARGV[A+3] enqueuedAt (caller ms)     ARGV[A+4] deadline (caller ms)
  ARGV[A+5] tokens (tpm estimate)      ARGV[A+6] seq or '' (a retry keeps its seq and round)
  ARGV[A+7] round or ''                ARGV[A+8] now (caller ms; converts caller times to server time)
Returns {LOST, NOW, REAPED, accepted 1, seq, position, round} or {LOST, NOW, REAPED, 0, retryAfterSeconds};
an error reply when the id is already waiting.
]]
local id, prio, tenant = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local enqueuedAt, deadline = tonumber(ARGV[A + 3]), tonumber(ARGV[A + 4])
local tokens, seqArg, roundArg, callerNow = ARGV[A + 5], ARGV[A + 6], ARGV[A + 7], tonumber(ARGV[A + 8])

if redis.call('HEXISTS', K.waiters, id) == 1 then
  return redis.error_reply('request ' .. id .. ' is already waiting')
end
local retry = seqArg ~= ''
-- A retry was admitted before: it re-enters even when the queue is full, at its old place.
if not retry and redis.call('HLEN', K.waiters) >= S.maxq then
  local seconds = retryAfterSeconds()
  saveAll()
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
  local tkey = prio .. '\0' .. tenant
  local served = tonumber(redis.call('HGET', K.served, prio)) or 0
  local last = tonumber(redis.call('HGET', K.rounds, tkey))
  if last == nil then round = served else round = math.max(last + 1, served) end
  redis.call('HSET', K.rounds, tkey, int(round))
end

-- Caller times become server times by their distance from the caller's now (clock skew cancels out).
local enq = NOW - math.max(0, callerNow - enqueuedAt)
local dl = NOW + (deadline - callerNow)
local rank = tonumber(prio)
if S.aging then rank = rank - enq / S.aging end

local m = member(round, seq, id)
redis.call('ZADD', K.queue, string.format('%.17g', rank), m)
redis.call('ZADD', K.deadlines, int(dl), id)
redis.call('ZADD', K.enqueued, int(enq), id)
redis.call('HSET', K.waiters, id,
  ME .. '\t' .. prio .. '\t' .. int(enq) .. '\t' .. int(dl) .. '\t' .. tokens .. '\t' .. int(seq) .. '\t' .. int(round) .. '\t' .. tenant)
redis.call('HINCRBY', K.depth, prio, 1)
redis.call('ZADD', K.owned, 0, ME .. '\0w\0' .. id)
saveAll()
return { LOST, int(NOW), REAPED, 1, int(seq), redis.call('ZRANK', K.queue, m), int(round) }
