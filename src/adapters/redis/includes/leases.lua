-- leases.lua: instance leases (KEYS[8]): renewing the caller's, reaping dead instances' waiters and
-- grants, the next lease end. Uses state.lua and waiters-grants.lua (parseWaiter, ownerOf, removeWaiter,
-- releaseGrant).

--- Renews the caller's lease; LOST = 1 when it was missing (reaped while we were silent, or data lost).
local function touchLease()
  if LEASED then
    LOST = 0
    return
  end
  LEASED = true
  LOST = redis.call('ZADD', K.leases, int(NOW + S.lease), ME)
end

local function ownerRange(o)
  return '[' .. o .. '\0', '(' .. o .. '\1'
end

--- Removes the waiters and releases the grants of the instances in `owners` (a set), drops their mail.
--- Scans the group's waiters and grants: it runs only when an instance dies or leaves.
local function reapOwners(owners)
  local n = 0
  local all = redis.call('HGETALL', K.waiters)
  for i = 1, #all, 2 do
    if owners[ownerOf(all[i + 1])] then
      removeWaiter(all[i], parseWaiter(all[i + 1]))
      n = n + 1
    end
  end
  all = redis.call('HGETALL', K.grants)
  for i = 1, #all, 2 do
    if owners[ownerOf(all[i + 1])] then
      local g = grantDeployment(all[i + 1])
      redis.call('HDEL', K.grants, all[i])
      releaseGrant(all[i], g.dep, g.tokens, 'cancelled', nil, nil, nil)
      n = n + 1
    end
  end
  for o in pairs(owners) do
    local lo, hi = ownerRange(o)
    redis.call('ZREMRANGEBYLEX', K.mail, lo, hi)
  end
  return n
end

--- Reaps every instance whose lease lapsed (not the caller).
---
--- Time in which no call reached the group's state is not counted against the leases: every live
--- instance calls at least every quarter of a lease (its heartbeat), so a silence of half a lease or
--- more means nobody could (a failover, Redis restarting) or nobody is there. A lease that lapsed in
--- that silence is moved on by its length, keeping what was left of it when the silence began; a
--- dead instance is then reaped that much later, a live one renews meanwhile and is not reaped.
local function reapDead()
  local prev = tonumber(redis.call('SET', K.seen, NOWS, 'GET'))
  if prev ~= nil and NOW - prev >= S.lease / 2 then
    local lapsed = redis.call('ZRANGEBYSCORE', K.leases, '(' .. int(prev), NOW, 'WITHSCORES')
    for i = 1, #lapsed, 2 do
      if lapsed[i] ~= ME then redis.call('ZADD', K.leases, 'XX', int(tonumber(lapsed[i + 1]) + NOW - prev), lapsed[i]) end
    end
  end
  local dead = redis.call('ZRANGEBYSCORE', K.leases, '-inf', NOW)
  if #dead == 0 then return end
  local owners, any = {}, false
  for _, o in ipairs(dead) do
    if o ~= ME then
      owners[o] = true
      any = true
      redis.call('ZREM', K.leases, o)
    end
  end
  if any then REAPED = REAPED + reapOwners(owners) end
end

--- The earliest lease expiry of another instance (server ms) as a string, '' when there is none: the
--- caller reaps right then, so a dead instance's slots come back at its lease's end, not a heartbeat later.
local function nextLeaseEnd()
  local first = redis.call('ZRANGE', K.leases, 0, 1, 'WITHSCORES')
  for i = 1, #first, 2 do
    if first[i] ~= ME then return first[i + 1] end
  end
  return ''
end
