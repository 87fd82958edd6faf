--[[
snapshot.lua: the group's state for status pages: waiting count, depth by priority, oldest wait,
each deployment's usage, and the first waiters in grant order.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] max waiters listed.
Returns {LOST, NOW, REAPED, waiting, depth (priority, count pairs), oldest enqueuedAt (server ms) or '',
         deployments (4 strings each: inflight, rpm used, tpm used, cooling-down-until or ''),
         waiters (7 strings each: id, priority, tenant, enqueuedAt, round, seq, estimated grant time
         (server ms; includes/grant-estimate.lua earliestGrant) or '' when unknown or past the first ETA_LISTED),
         upstream-blocked until (server ms) or '', one per deployment}.
]]
local max = tonumber(ARGV[A])
local waiting = waitingCount()
local depth = redis.call('HGETALL', K.depth)
local oldest = ''
local first = redis.call('ZRANGE', K.enqueued, 0, 0, 'WITHSCORES')
if first[2] then oldest = first[2] end
local deps, blocked = {}, {}
for di = 1, ND do
  local d = DEPS[di]
  load(d)
  local cool = ''
  if coolingDown(d) then cool = int(d.cool) end
  deps[#deps + 1] = int(d.inflight)
  deps[#deps + 1] = int(d.rpmUsed)
  deps[#deps + 1] = int(d.tpmUsed)
  deps[#deps + 1] = cool
  blocked[#blocked + 1] = upstreamBlocked(d) and int(d.ublock) or ''
end
-- Each listed waiter's estimate costs a bisection: only the first ones get one.
local ETA_LISTED = 100
local limit = nil
local list = {}
local from = 0
while from < max do
  local heads = redis.call('ZRANGE', K.queue, from, math.min(max, from + 500) - 1)
  if #heads == 0 then break end
  local ids = {}
  for j, m in ipairs(heads) do ids[j] = string.sub(m, 31) end
  local recs = redis.call('HMGET', K.waiters, unpack(ids))
  for j = 1, #heads do
    if recs[j] then
      local w = parseWaiter(recs[j])
      local ahead = #list / 7
      list[#list + 1] = ids[j]
      list[#list + 1] = w.prio
      list[#list + 1] = w.tenant
      list[#list + 1] = int(w.enq)
      list[#list + 1] = w.round
      list[#list + 1] = w.seq
      local eta = ''
      if ETA_KNOWN and ahead < ETA_LISTED then
        if limit == nil then limit = horizon() end
        local at = earliestGrant(ahead, w.tokens, limit)
        if at then eta = int(at) end
      end
      list[#list + 1] = eta
    end
  end
  from = from + #heads
end
finish()
return { LOST, NOWS, REAPED, waiting, depth, oldest, deps, list, blocked }
