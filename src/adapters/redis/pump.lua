--[[
pump.lua: ends lapsed cooldowns, expires overdue waiters, then grants waiters strictly in global queue
order while a deployment has headroom (up to a batch cap), choosing the least-loaded deployment and
recording every limit (in flight, rpm, tpm). Grants and expiries of waiters owned by other instances
go to their mailbox and each such owner is told on its channel; the caller's own mail is claimed too.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] batch cap (grants per call).
Returns {LOST, NOW, REAPED, waiting, next wake (server ms) or '', more 1 | 0,
         grants (8 strings each, see pushGrant), expired ids, deployments whose cooldown ended}.
]]
local cap = tonumber(ARGV[A])
local grants, expired, ended = {}, {}, {}

for _, d in ipairs(DEPS) do
  load(d)
  if d.cool ~= nil and NOW >= d.cool then
    d.cool = nil
    ended[#ended + 1] = d.id
  end
end

local overdue = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', NOW, 'LIMIT', 0, 1000)
for _, id in ipairs(overdue) do
  local rec = redis.call('HGET', K.waiters, id)
  if rec then
    local w = parseWaiter(rec)
    removeWaiter(id, w, false)
    if w.owner == ME then expired[#expired + 1] = id else mailTo(w.owner, 'x', id) end
  else
    redis.call('ZREM', K.deadlines, id)
  end
end

local count, blockedTokens, servedCache = 0, nil, {}
local nowStr = int(NOW)
while count < cap and blockedTokens == nil do
  local heads = redis.call('ZRANGE', K.queue, 0, math.min(64, cap - count) - 1)
  if #heads == 0 then break end
  local ids = {}
  for j, m in ipairs(heads) do ids[j] = string.sub(m, 31) end
  local recs = redis.call('HMGET', K.waiters, unpack(ids))
  for j = 1, #heads do
    local id, rec = ids[j], recs[j]
    if not rec then
      redis.call('ZREM', K.queue, heads[j])
    else
      local w = parseWaiter(rec)
      local d = pick(w.tokens)
      -- Strict order: if the head cannot go, nobody behind it jumps the queue.
      if d == nil then
        blockedTokens = w.tokens
        break
      end
      removeWaiter(id, w, false)
      local gid = id .. '/' .. redis.call('INCR', K.gseq)
      d.inflight = d.inflight + 1
      if d.rpm then
        redis.call('ZADD', d.krpm, nowStr, gid)
        d.rpmUsed = d.rpmUsed + 1
      end
      if d.tpm then
        redis.call('ZADD', d.ktpm, nowStr, gid .. '\t' .. w.tokensStr)
        d.tpmUsed = d.tpmUsed + w.tokens
      end
      local round = tonumber(w.round)
      local served = servedCache[w.prio]
      if served == nil then served = tonumber(redis.call('HGET', K.served, w.prio)) or 0 end
      if round > served then
        served = round
        redis.call('HSET', K.served, w.prio, int(round))
      end
      servedCache[w.prio] = served
      local g = { owner = w.owner, dep = d.id, tokens = w.tokensStr, at = nowStr, waited = int(NOW - w.enq),
                  prio = w.prio, seq = w.seq, rid = id }
      redis.call('HSET', K.grants, gid, g.owner .. '\t' .. g.dep .. '\t' .. g.tokens .. '\t' .. g.at .. '\t' ..
        g.waited .. '\t' .. g.prio .. '\t' .. g.seq .. '\t' .. id)
      redis.call('ZADD', K.owned, 0, w.owner .. '\0g\0' .. gid)
      if w.owner == ME then pushGrant(grants, gid, g) else mailTo(w.owner, 'g', gid) end
      count = count + 1
      if count >= cap then break end
    end
  end
end

if count > 0 then
  local sec = math.floor(NOW / 1000)
  if redis.call('HINCRBY', K.rate, sec, count) == count then
    -- A new second began: forget seconds older than a minute.
    for _, s in ipairs(redis.call('HKEYS', K.rate)) do
      if tonumber(s) <= sec - 60 then redis.call('HDEL', K.rate, s) end
    end
  end
end

claimMail(grants, expired)

local waiting = redis.call('HLEN', K.waiters)
local more = 0
local wake = nil
if waiting > 0 and blockedTokens == nil and count >= cap then
  more = 1
  wake = NOW
else
  local first = redis.call('ZRANGE', K.deadlines, 0, 0, 'WITHSCORES')
  if first[2] then wake = tonumber(first[2]) end
  for _, d in ipairs(DEPS) do
    if coolingDown(d) and (wake == nil or d.cool < wake) then wake = d.cool end
  end
  if blockedTokens ~= nil then
    for _, d in ipairs(DEPS) do
      local at = nextCapacityAt(d, blockedTokens)
      -- `at == NOW` with no grant means only a release can help; releases are events, not times.
      if at ~= nil and at > NOW and (wake == nil or at < wake) then wake = at end
    end
  end
end

saveAll()
flushNotify()
local wakeStr = ''
if wake ~= nil then wakeStr = int(wake) end
return { LOST, int(NOW), REAPED, waiting, wakeStr, more, grants, expired, ended }
