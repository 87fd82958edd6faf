-- waiters-grants.lua: waiter and grant records (parse, add, remove), the waiting count and depth per
-- priority, ending a grant (releaseGrant). Uses state.lua and deployments.lua (load).

local function parseWaiter(rec)
  local owner, prio, enq, dl, tok, seq, round, tenant =
    string.match(rec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return {
    owner = owner, prio = prio, enq = num(enq), deadline = num(dl), tokens = num(tok),
    tokensStr = tok, seq = seq, round = round, tenant = tenant,
  }
end

local function ownerOf(rec)
  return string.match(rec, '^([^\t]*)\t')
end

local function member(round, seq, id)
  return string.format('%015d%015d', round, seq) .. id
end

--- The number of waiters: HLEN once per call, then kept by this call's own additions and removals
--- (addWaiting), so a batch's operations do not read it again each.
local function waitingCount()
  if WAITING == nil then WAITING = redis.call('HLEN', K.waiters) end
  return WAITING
end

local function addWaiting(delta)
  if WAITING ~= nil then WAITING = WAITING + delta end
end

local function addDepth(prio, delta)
  DEPTH[prio] = (DEPTH[prio] or 0) + delta
end

local function removeWaiter(id, w)
  redis.call('ZREM', K.queue, member(w.round, w.seq, id))
  redis.call('ZREM', K.deadlines, id)
  redis.call('ZREM', K.enqueued, id)
  redis.call('HDEL', K.waiters, id)
  addWaiting(-1)
  addDepth(w.prio, -1)
end

local function parseGrant(rec)
  local owner, dep, tok, at, waited, prio, seq, rid =
    string.match(rec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return { owner = owner, dep = dep, tokens = tok, at = at, waited = waited, prio = prio, seq = seq, rid = rid }
end

--- The deployment and tokens of a grant record: { dep, tokens }.
local function grantDeployment(rec)
  local dep, tok = string.match(rec, '^[^\t]*\t([^\t]*)\t([^\t]*)')
  return { dep = dep, tokens = tok }
end

local function grantRecord(g)
  return g.owner .. '\t' .. g.dep .. '\t' .. g.tokens .. '\t' .. g.at .. '\t' .. g.waited .. '\t' .. g.prio .. '\t' .. g.seq .. '\t' .. g.rid
end

--- A grant as pushGrant's 8 fields in one tab-separated string: a reply line (includes/grant-step.lua
--- pumpLists joins lines and 8-string groups alike) and a record of a grants message (mail.lua).
local function grantLine(gid, g)
  return gid .. '\t' .. g.rid .. '\t' .. g.dep .. '\t' .. g.tokens .. '\t' .. g.at .. '\t' .. g.waited .. '\t' .. g.prio .. '\t' .. g.seq
end

--- Appends a grant as 8 strings: grant id, request id, deployment, tokens, grantedAt, waitedMs, priority, seq.
local function pushGrant(out, gid, g)
  local n = #out
  out[n + 1] = gid
  out[n + 2] = g.rid
  out[n + 3] = g.dep
  out[n + 4] = g.tokens
  out[n + 5] = g.at
  out[n + 6] = g.waited
  out[n + 7] = g.prio
  out[n + 8] = g.seq
end

--- Ends a grant whose record the caller deleted, on deployment `dep` with `reserved` tokens (as its
--- record held them): frees its slot, reconciles tpm, applies the cooldown policy. Returns (until, reason).
local function releaseGrant(gid, dep, reserved, kind, tokensUsed, failure, retryAfterMs, message)
  local d = DEP_BY_ID[dep]
  if d == nil then return nil end
  -- Loaded now: the grant step after a release reads the deployment anyway, and the counters changed
  -- in the cache are written once, by finish().
  load(d)
  d.inflight = math.max(0, d.inflight - 1)
  local reservedTokens = tonumber(reserved) or 0
  if d.tpm then d.itpm = math.max(0, d.itpm - reservedTokens) end
  if kind == 'ok' and tokensUsed and d.tpm then
    local old = gid .. '\t' .. reserved
    local at = redis.call('ZSCORE', d.ktpm, old)
    -- Only a record still inside the window counts; an older one no longer weighs on the limit.
    if at and tonumber(at) > NOW - WINDOW then
      redis.call('ZREM', d.ktpm, old)
      redis.call('ZADD', d.ktpm, at, gid .. '\t' .. int(tokensUsed))
      d.tpmUsed = math.max(0, d.tpmUsed + tokensUsed - reservedTokens)
    end
  end
  if kind ~= 'failed' or failure == 'client_error' then return nil end
  if message and message ~= '' then redis.call('HSET', d.key, 'err', message) end
  redis.call('ZREMRANGEBYSCORE', d.kfail, '-inf', NOW - WINDOW)
  redis.call('ZADD', d.kfail, NOW, gid)
  local count = redis.call('ZCARD', d.kfail)
  -- A 429 and a refused key (auth_failed) cool down at once; other failures after allowed_fails.
  if failure ~= 'rate_limited' and failure ~= 'auth_failed' and count <= S.allowed then return nil end
  local duration = retryAfterMs or S.coolms
  if duration <= 0 then return nil end
  load(d)
  d.cool = math.max(d.cool or 0, NOW + duration)
  redis.call('HSET', d.key, 'why', failure)
  redis.call('DEL', d.kfail)
  return d.cool, failure
end
