--[[
pump.lua: ends lapsed cooldowns, expires overdue waiters, then grants waiters strictly in global queue
order while a deployment has headroom (up to a batch cap), choosing the least-loaded deployment and
recording every limit (in flight, rpm, tpm). Grants and expiries of waiters owned by other instances
go to their mailbox and each such owner is told on its channel; the caller's own mail is claimed too.
Also renews the caller's lease and reaps instances whose lease lapsed.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] batch cap (grants per call).
Returns {LOST, NOW, REAPED, waiting, next wake (server ms) or '', more 1 | 0,
         grants (8 strings each, see pushGrant), expired ids, deployments whose cooldown ended}.
]]
local cap = tonumber(ARGV[A])
local grants, expired, ended = {}, {}, {}
touchLease()
reapDead()

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
    removeWaiter(id, w)
    if w.owner == ME then
      expired[#expired + 1] = id
    else
      redis.call('ZADD', K.mail, 0, w.owner .. '\0x\0' .. id)
      NOTIFY[w.owner] = true
    end
  else
    redis.call('ZREM', K.deadlines, id)
  end
end

-- Grant from the head. Granted waiters stay in the ZSET until the end (one variadic call per key), so
-- the scan reads further heads at an offset.
local count, offset, blockedTokens = 0, 0, nil
-- Grant ids: request id / server ms . call counter (unique even if Redis lost its data meanwhile).
local gidSuffix = '/' .. int(NOW) .. '.' .. redis.call('INCR', K.gseq)
local nowStr = int(NOW)
local served = {}
local takenMembers, takenIds, grantPairs, mailPairs = {}, {}, {}, {}
local rpmAdds, tpmAdds = {}, {}
while count < cap and blockedTokens == nil do
  local heads = redis.call('ZRANGE', K.queue, offset, offset + math.min(64, cap - count) - 1)
  if #heads == 0 then break end
  local ids = {}
  for j, m in ipairs(heads) do ids[j] = string.sub(m, 31) end
  local recs = redis.call('HMGET', K.waiters, unpack(ids))
  for j = 1, #heads do
    local id, rec = ids[j], recs[j]
    if not rec then
      takenMembers[#takenMembers + 1] = heads[j]
      offset = offset + 1
    else
      local w = parseWaiter(rec)
      local d = pick(w.tokens)
      -- Strict order: if the head cannot go, nobody behind it jumps the queue.
      if d == nil then
        blockedTokens = w.tokens
        break
      end
      offset = offset + 1
      count = count + 1
      takenMembers[#takenMembers + 1] = heads[j]
      takenIds[#takenIds + 1] = id
      addDepth(w.prio, -1)
      local gid = id .. gidSuffix
      d.inflight = d.inflight + 1
      if d.rpm then
        d.rpmUsed = d.rpmUsed + 1
        local t = rpmAdds[d] or {}
        t[#t + 1] = nowStr
        t[#t + 1] = gid
        rpmAdds[d] = t
      end
      if d.tpm then
        d.tpmUsed = d.tpmUsed + w.tokens
        local t = tpmAdds[d] or {}
        t[#t + 1] = nowStr
        t[#t + 1] = gid .. '\t' .. w.tokensStr
        tpmAdds[d] = t
      end
      local round = tonumber(w.round)
      if served[w.prio] == nil then served[w.prio] = { was = tonumber(redis.call('HGET', K.rounds, 's\0' .. w.prio)) or 0 } end
      local s = served[w.prio]
      if round > (s.now or s.was) then s.now = round end
      local g = { owner = w.owner, dep = d.id, tokens = w.tokensStr, at = nowStr, waited = int(NOW - w.enq),
                  prio = w.prio, seq = w.seq, rid = id }
      grantPairs[#grantPairs + 1] = gid
      grantPairs[#grantPairs + 1] = grantRecord(g)
      if w.owner == ME then
        pushGrant(grants, gid, g)
      else
        mailPairs[#mailPairs + 1] = 0
        mailPairs[#mailPairs + 1] = w.owner .. '\0g\0' .. gid
        NOTIFY[w.owner] = true
      end
      if count >= cap then break end
    end
  end
end

if #takenMembers > 0 then redis.call('ZREM', K.queue, unpack(takenMembers)) end
if count > 0 then
  redis.call('ZREM', K.deadlines, unpack(takenIds))
  redis.call('ZREM', K.enqueued, unpack(takenIds))
  redis.call('HDEL', K.waiters, unpack(takenIds))
  redis.call('HSET', K.grants, unpack(grantPairs))
  if #mailPairs > 0 then redis.call('ZADD', K.mail, unpack(mailPairs)) end
  for d, t in pairs(rpmAdds) do redis.call('ZADD', d.krpm, unpack(t)) end
  for d, t in pairs(tpmAdds) do redis.call('ZADD', d.ktpm, unpack(t)) end
  for prio, s in pairs(served) do
    if s.now ~= nil then redis.call('HSET', K.rounds, 's\0' .. prio, int(s.now)) end
  end
  local sec = math.floor(NOW / 1000)
  if redis.call('HINCRBY', K.rate, sec, count) == count then
    -- A new second began: forget seconds older than a minute.
    for _, f in ipairs(redis.call('HKEYS', K.rate)) do
      if tonumber(f) <= sec - 60 then redis.call('HDEL', K.rate, f) end
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

finish()
local wakeStr = ''
if wake ~= nil then wakeStr = int(wake) end
return { LOST, int(NOW), REAPED, waiting, wakeStr, more, grants, expired, ended }
