-- deployments.lua: a deployment's counters and limits (in flight, rpm, tpm, cooldown, upstream block),
-- headroom, the least-loaded pick, when it can next take tokens. Uses state.lua (NOW, DEPS, DEP_BY_ID,
-- WINDOW).

--- Reads a deployment's counters once per script and drops window records older than 60 s.
local function load(d)
  if d.loaded then return d end
  d.loaded = true
  local v = redis.call('HMGET', d.key, 'inflight', 'tpm', 'cool', 'ublock', 'itpm')
  d.inflight = tonumber(v[1]) or 0
  d.tpmUsed = tonumber(v[2]) or 0
  d.cool = tonumber(v[3])
  d.ublock = tonumber(v[4])
  d.itpm = tonumber(v[5]) or 0
  d.saved = { d.inflight, d.tpmUsed, d.cool, d.ublock, d.itpm }
  local cutoff = NOW - WINDOW
  d.rpmUsed = 0
  if d.rpm then
    redis.call('ZREMRANGEBYSCORE', d.krpm, '-inf', cutoff)
    d.rpmUsed = redis.call('ZCARD', d.krpm)
  end
  if d.tpm then
    local old = redis.call('ZRANGEBYSCORE', d.ktpm, '-inf', cutoff)
    if #old > 0 then
      for _, m in ipairs(old) do d.tpmUsed = d.tpmUsed - (tonumber(string.match(m, '\t([^\t]*)$')) or 0) end
      redis.call('ZREMRANGEBYSCORE', d.ktpm, '-inf', cutoff)
      if redis.call('ZCARD', d.ktpm) == 0 or d.tpmUsed < 0 then d.tpmUsed = 0 end
    end
  end
  return d
end

local function coolingDown(d)
  return d.cool ~= nil and NOW < d.cool
end

--- True while the provider's rate-limit headers said a limit is used up (until its reset).
local function upstreamBlocked(d)
  return d.ublock ~= nil and NOW < d.ublock
end

--- Blocks deployment `id` for `ms` from now (a release's upstream block); returns the new end, or nil
--- when an existing block lasts longer (or the deployment is unknown).
local function blockUpstream(id, ms)
  local d = DEP_BY_ID[id]
  if d == nil or ms == nil or ms <= 0 then return nil end
  load(d)
  local untilAt = NOW + ms
  if upstreamBlocked(d) and d.ublock >= untilAt then return nil end
  d.ublock = untilAt
  return untilAt
end

--- A window fits `amount` more when under its limit, or when empty (one oversized request may pass).
local function fits(used, amount, limit)
  return used + amount <= limit or used == 0
end

local function canTake(d, tokens)
  if coolingDown(d) or upstreamBlocked(d) then return false end
  if d.par and d.inflight >= d.par then return false end
  if d.rpm and not fits(d.rpmUsed, 1, d.rpm) then return false end
  if d.tpm and not fits(d.tpmUsed, tokens, d.tpm) then return false end
  return true
end

local function loadOf(d)
  local l = 0
  if d.par then l = math.max(l, d.inflight / d.par) end
  if d.rpm then l = math.max(l, d.rpmUsed / d.rpm) end
  if d.tpm then l = math.max(l, d.tpmUsed / d.tpm) end
  return l
end

--- Among deployments with headroom the least loaded; ties: fewer in flight, then config order.
local function pick(tokens)
  local best, bestLoad = nil, 0
  for di = 1, ND do
    local d = DEPS[di]
    load(d)
    if canTake(d, tokens) then
      local l = loadOf(d)
      if best == nil or l < bestLoad or (l == bestLoad and d.inflight < best.inflight) then
        best, bestLoad = d, l
      end
    end
  end
  return best
end

--- An upper bound on the grants the deployments can take right now (math.huge when unbounded).
local function headroom()
  local total = 0
  for di = 1, ND do
    local d = DEPS[di]
    load(d)
    if not coolingDown(d) and not upstreamBlocked(d) then
      local h = math.huge
      if d.par then h = d.par - d.inflight end
      -- (An empty window takes one request whatever its limit, as fits() says.)
      if d.rpm then h = math.min(h, d.rpmUsed == 0 and math.max(1, d.rpm) or d.rpm - d.rpmUsed) end
      if h > 0 then total = total + h end
    end
  end
  return total
end

--- When `d` could next take `tokens` (server ms), ignoring calls in flight; nil = only a release helps,
--- unless `ignoreInflight` (the grant estimate's certain bound, which a call ending cannot move).
local function nextCapacityAt(d, tokens, ignoreInflight)
  load(d)
  local at = NOW
  if coolingDown(d) then at = math.max(at, d.cool) end
  if upstreamBlocked(d) then at = math.max(at, d.ublock) end
  if not ignoreInflight and d.par and d.inflight >= d.par then return nil end
  if d.rpm and not fits(d.rpmUsed, 1, d.rpm) then
    local k = math.max(0, math.min(d.rpmUsed - d.rpm, d.rpmUsed - 1))
    local r = redis.call('ZRANGE', d.krpm, k, k, 'WITHSCORES')
    if r[2] then at = math.max(at, tonumber(r[2]) + WINDOW) end
  end
  -- The certain bound: the calls in flight might end having used none of the tpm they reserved.
  if ignoreInflight then tokens = tokens - d.itpm end
  if d.tpm and not fits(d.tpmUsed, tokens, d.tpm) then
    local used, i, found = d.tpmUsed, 0, nil
    while found == nil do
      local r = redis.call('ZRANGE', d.ktpm, i, i + 99, 'WITHSCORES')
      if #r == 0 then break end
      for j = 1, #r, 2 do
        used = used - (tonumber(string.match(r[j], '\t([^\t]*)$')) or 0)
        if fits(used, tokens, d.tpm) then found = tonumber(r[j + 1]) + WINDOW break end
      end
      i = i + 100
    end
    if found then at = math.max(at, found) end
  end
  return at
end
