-- grant-estimate.lua: when a waiter could be granted (src/machines/grant-estimate.ts in Lua): the
-- earliest grant, reachability of a deadline, Retry-After seconds, shedding waiters that cannot be served.
-- Uses state.lua, deployments.lua, waiters-grants.lua, mail.lua (mailDisplaced) and retry-after.lua.

--- When `d` grants anything at all, cached per script (a script's grant step may change it: call
--- before granting, or after the last grant).
local function readyAt(d)
  if d.ready == nil then d.ready = nextCapacityAt(d, 1, true) end
  return d.ready
end

--- Grants `d` can make in [NOW, t] at most: its rpm limit as lanes (grant-estimate.ts grantsBy).
local function grantsBy(d, t)
  local ready = readyAt(d)
  if t < ready then return 0 end
  if not d.rpm then return math.huge end
  local base = math.max(NOW, ready)
  local q = math.floor((t - base) / WINDOW)
  local x = t - q * WINDOW
  local open = 0
  if x >= base then
    open = math.min(d.rpm, math.max(0, d.rpm - d.rpmUsed) + redis.call('ZCOUNT', d.krpm, '-inf', x - WINDOW))
  end
  return d.rpm * q + open
end

--- Whether a waiter with `ahead` waiters before it could be granted by t (some of them leave at their deadline).
local function reachable(ahead, t)
  local still = math.max(0, ahead - redis.call('ZCOUNT', K.deadlines, '-inf', t))
  local n = 0
  for di = 1, ND do
    local d = DEPS[di]
    n = n + grantsBy(d, t)
    if n >= still + 1 then return true end
  end
  return false
end

--- Past this, every waiter has left and capacity has returned.
local function horizon()
  local last = redis.call('ZRANGE', K.deadlines, -1, -1, 'WITHSCORES')
  local h = NOW
  if last[2] then h = math.max(h, tonumber(last[2])) end
  for di = 1, ND do h = math.max(h, readyAt(DEPS[di])) end
  return h + MAX_COOLDOWN + 2 * WINDOW
end

--- The certain lower bound on when a waiter with `ahead` waiters before it, reserving `tokens`, is
--- granted (server ms), by bisection; nil when not by `limit`.
local function earliestGrant(ahead, tokens, limit)
  if ND == 0 then return nil end
  local at
  if reachable(ahead, NOW) then
    at = NOW
  elseif limit <= NOW or not reachable(ahead, limit) then
    return nil
  else
    local lo, hi = NOW, math.ceil(limit)
    while hi - lo > 1 do
      local mid = math.floor((lo + hi) / 2)
      if reachable(ahead, mid) then hi = mid else lo = mid end
    end
    at = hi
  end
  -- Its own reservation must fit somewhere too.
  local own = nil
  for di = 1, ND do
    local d = DEPS[di]
    local a = nextCapacityAt(d, tokens, true)
    if own == nil or a < own then own = a end
  end
  return math.max(at, own)
end

--- Whether a waiter with `ahead` waiters before it, reserving `tokens`, could be granted by t at all.
local function grantableBy(ahead, tokens, t)
  if not reachable(ahead, t) then return false end
  for di = 1, ND do
    local d = DEPS[di]
    if nextCapacityAt(d, tokens, true) <= t then return true end
  end
  return false
end

local function secondsUntil(at)
  return math.max(1, math.ceil((at - NOW) / 1000))
end

--- Seconds a refused newcomer (behind every waiter, reserving `tokens`) should wait: when it could be
--- granted, from the grant estimate. Where max_parallel_requests alone bounds a deployment, the time to
--- drain the queue at last minute's grant rate if longer, but never past the longest wait still ahead.
--- 1 .. 3600 (MemoryStore.retryAfterSecondsNow).
local function retryAfterSeconds(tokens)
  if ND == 0 then return 3600 end
  local waiting = waitingCount()
  local at = earliestGrant(waiting, tokens or 1, horizon())
  local seconds = 3600
  if at then seconds = secondsUntil(at) end
  if not ETA_KNOWN then
    local rate = grantsLastMinute() / 60
    local drain = 1
    if rate > 0 then drain = math.ceil((waiting + 1) / rate) end
    local last = redis.call('ZRANGE', K.deadlines, -1, -1, 'WITHSCORES')
    local latest = NOW
    if last[2] then latest = tonumber(last[2]) end
    seconds = math.max(seconds, math.min(drain, secondsUntil(latest)))
  end
  return math.min(3600, seconds)
end

--- After a cooldown started: the waiters whose deadline passes before anyone at all could be granted
--- leave now, answered 429 queue_timeout_certain through their owner's mail.
local function shedUnreachable()
  local first = earliestGrant(0, 1, horizon())
  if first == nil or first <= NOW then return end
  local ids = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', '(' .. int(first), 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    local rec = redis.call('HGET', K.waiters, id)
    if rec then
      local w = parseWaiter(rec)
      removeWaiter(id, w)
      mailDisplaced(w.owner, id, secondsUntil(first), 'u')
    end
  end
end

--- When every deployment cools down after failures that are not 429s: when the first comes back
--- (server ms) and the last upstream error; nil otherwise (a 429's cooldown is the upstream's own
--- schedule: its waiters wait). MemoryStore.unavailable.
local function unavailable()
  if ND == 0 then return nil end
  local back, message = nil, nil
  for di = 1, ND do
    local d = DEPS[di]
    load(d)
    if not coolingDown(d) then return nil end
    local v = redis.call('HMGET', d.key, 'why', 'err')
    if v[1] == 'rate_limited' then return nil end
    if back == nil or d.cool < back then back = d.cool end
    if v[2] then message = v[2] end
  end
  return back, message
end

--- After a cooldown started and every deployment now fails: every waiter is answered 503
--- upstream_unavailable through its owner's mail (a rare walk of the queue, 1000 at a time).
local function shedUnavailable()
  local back, message = unavailable()
  if back == nil then return false end
  local extra = '\t' .. (message or '')
  while true do
    local heads = redis.call('ZRANGE', K.queue, 0, 999)
    if #heads == 0 then break end
    for _, m in ipairs(heads) do
      local id = string.sub(m, 31)
      local rec = redis.call('HGET', K.waiters, id)
      if rec then
        local w = parseWaiter(rec)
        removeWaiter(id, w)
        mailDisplaced(w.owner, id, secondsUntil(back), 'f', extra)
      else
        redis.call('ZREM', K.queue, m)
      end
    end
  end
  return true
end
