--[[
lib.lua: the shared helpers of every Triage script, defined once. redis-store.ts loads one Redis Function
library (FUNCTION LOAD; redis-library.ts): this file, then each script file (enqueue.lua, release.lua,
...) registered as one function whose body runs after begin(). The library's top level runs once, when
it is loaded; each FCALL runs only begin() and the script's own body, still ONE atomic call.

KEYS (the same layout for every script; all keys of a model group share the hash tag {model}):
  KEYS[1]  queue      ZSET   score = rank (priority, or priority * agingMs + enqueuedAt with aging)
                             member = round (15 digits) .. seq (15 digits) .. request id
                             => ZSET order (score, then bytes of member) = compareOrder (rank, round, seq)
  KEYS[2]  deadlines  ZSET   score = queue-wait deadline (server ms), member = request id
  KEYS[3]  enqueued   ZSET   score = enqueuedAt (server ms), member = request id (oldest wait)
  KEYS[4]  waiters    HASH   request id -> owner \t priority \t enqueuedAt \t deadline \t tokens \t seq \t round \t tenant
  KEYS[5]  depth      HASH   priority -> waiting count
  KEYS[6]  grants     HASH   grant id -> owner \t deployment \t tokens \t grantedAt \t waitedMs \t priority \t seq \t request id
  KEYS[7]  mail       ZSET   score 0, lexicographic: results for an owner not delivered to it yet:
                             owner \0 g \0 grant id     owner \0 x \0 request id (expired)
  KEYS[8]  leases     ZSET   score = lease expiry (server ms), member = instance id
  KEYS[9]  seq        STRING arrival sequence counter
  KEYS[10] gseq       STRING grant step counter, + 1 per step that grants (grant ids are request id / server ms . counter)
  KEYS[11] rounds     HASH   fair rounds: s \0 priority -> highest round granted,
                             t \0 priority \0 tenant -> last round given to that tenant
  KEYS[12] rate       HASH   unix second -> grants in that second (last minute; Retry-After)
  KEYS[13] seen       STRING server ms of the last call that reaped (reapDead): a longer silence is not
                             counted against the leases
  then for deployment i = 0 .. n-1 in config order:
  KEYS[14+4i] dep     HASH   inflight, tpm (tokens in the window), cool (cooldown end, server ms),
                             ublock (end of a block from the provider's rate-limit headers, server ms),
                             why (the failure that started the cooldown), err (the last upstream error)
  KEYS[15+4i] rpm     ZSET   score = grant time (server ms), member = grant id
  KEYS[16+4i] tpm     ZSET   score = grant time (server ms), member = grant id \t tokens
  KEYS[17+4i] fail    ZSET   score = failure time (server ms), member = grant id

ARGV (the same prefix for every script):
  ARGV[1] caller instance id        ARGV[2] lease ms           ARGV[3] channel prefix (owner id appended;
                                                                 NUL 's' before it: SPUBLISH, Redis Cluster)
  ARGV[4] model group name          ARGV[5] aging ms or ''     ARGV[6] max queue size
  ARGV[7] cooldown ms               ARGV[8] allowed fails      ARGV[9] n = number of deployments
  then per deployment: id, rpm, tpm, max_parallel_requests ('' = unlimited)
  The script's own arguments start at ARGV[A], A = 10 + 4n.

Time is the Redis server's clock (TIME), in ms, for windows, deadlines, cooldowns and leases. Tests only:
a store built with a script clock (RedisStoreOptions.scriptClock) ends every call's ARGV with
'clock:<ms>', and that is NOW instead, so a test can move time for Redis and MemoryStore alike.
Replies start with {LOST, NOW, REAPED}: LOST = 1 when the caller's lease was missing (it was reaped, or
Redis lost its data), REAPED = waiters and grants of dead instances removed / released by this call.
Numbers go back to the client as strings (a Lua number would be truncated to an integer reply).
]]

local WINDOW = 60000
local MAX_COOLDOWN = 300000

-- Per-call state: the library's top level runs once, so every call sets all of it in begin().
local NOW, NOWS, ME, S, K, ND, DEPS, DEP_BY_ID, A
local LOST, REAPED, NOTIFY, DEPTH
--- In a batch of operations (batch()): finish() is left to the batch's end.
local BATCH
--- The caller's lease was renewed in this call; its mail was claimed, and mail for it added since.
local LEASED, MAIL_CLAIMED, MAIL_ME
--- The rounds hash as this call sees it (roundsGet / roundsSet), and the fields to write back.
local ROUNDS, ROUNDS_SET
--- The number of waiters (waitingCount), nil until read in this call.
local WAITING
--- The cooldowns ended in this call's grant step (beginStep), nil before it.
local ENDED
--- Whether the grant estimate is also a fair ETA: no deployment bounded by max_parallel_requests alone.
local ETA_KNOWN

--- The start of every call: the time, the group's settings and keys from KEYS and ARGV, fresh state.
local function begin(KEYS, ARGV)
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local last = ARGV[#ARGV]
  if string.sub(last, 1, 6) == 'clock:' then NOW = tonumber(string.sub(last, 7)) end
  NOWS = string.format('%d', NOW)
  ME = ARGV[1]
  S = {
    lease = tonumber(ARGV[2]),
    chan = ARGV[3],
    pub = 'PUBLISH',
    model = ARGV[4],
    aging = tonumber(ARGV[5]),
    maxq = tonumber(ARGV[6]),
    coolms = tonumber(ARGV[7]),
    allowed = tonumber(ARGV[8]),
  }
  -- On a cluster the channel carries the group's hash tag: SPUBLISH stays on the group's shard.
  if string.sub(S.chan, 1, 2) == '\0s' then S.chan, S.pub = string.sub(S.chan, 3), 'SPUBLISH' end
  K = {
    queue = KEYS[1], deadlines = KEYS[2], enqueued = KEYS[3], waiters = KEYS[4], depth = KEYS[5],
    grants = KEYS[6], mail = KEYS[7], leases = KEYS[8], seq = KEYS[9], gseq = KEYS[10],
    rounds = KEYS[11], rate = KEYS[12], seen = KEYS[13],
  }
  ND = tonumber(ARGV[9])
  DEPS, DEP_BY_ID = {}, {}
  ETA_KNOWN = true
  for i = 1, ND do
    local a = 9 + (i - 1) * 4
    local k = 13 + (i - 1) * 4
    local d = {
      id = ARGV[a + 1], rpm = tonumber(ARGV[a + 2]), tpm = tonumber(ARGV[a + 3]), par = tonumber(ARGV[a + 4]),
      key = KEYS[k + 1], krpm = KEYS[k + 2], ktpm = KEYS[k + 3], kfail = KEYS[k + 4], loaded = false,
    }
    DEPS[i] = d
    DEP_BY_ID[d.id] = d
    if not d.rpm and d.par then ETA_KNOWN = false end
  end
  A = 10 + ND * 4
  LOST, REAPED = 0, 0
  NOTIFY, DEPTH = {}, {}
  ENDED = nil
  BATCH, LEASED, MAIL_CLAIMED, MAIL_ME = false, false, false, false
  ROUNDS, ROUNDS_SET = {}, {}
  WAITING = nil
end

local function int(n)
  return string.format('%d', n)
end

-- Fair rounds (KEYS[11]) ------------------------------------------------------------------------------

--- Fields of the rounds hash (strings, nil when absent), each read at most once per call: the arrivals
--- of one tenant and priority in a batch share them.
local function roundsGet(f1, f2)
  local need = {}
  if ROUNDS[f1] == nil then need[#need + 1] = f1 end
  if f2 ~= nil and ROUNDS[f2] == nil then need[#need + 1] = f2 end
  if #need > 0 then
    local v = redis.call('HMGET', K.rounds, unpack(need))
    for i, f in ipairs(need) do ROUNDS[f] = v[i] or false end
  end
  local a, b = ROUNDS[f1], false
  if f2 ~= nil then b = ROUNDS[f2] end
  return a or nil, b or nil
end

--- Sets fields of the rounds hash (field, value, ...); finish() writes them once.
local function roundsSet(fields)
  for i = 1, #fields, 2 do
    ROUNDS[fields[i]] = fields[i + 1]
    ROUNDS_SET[#ROUNDS_SET + 1] = fields[i]
  end
end

-- Deployment state -----------------------------------------------------------------------------------

--- Reads a deployment's counters once per script and drops window records older than 60 s.
local function load(d)
  if d.loaded then return d end
  d.loaded = true
  local v = redis.call('HMGET', d.key, 'inflight', 'tpm', 'cool', 'ublock')
  d.inflight = tonumber(v[1]) or 0
  d.tpmUsed = tonumber(v[2]) or 0
  d.cool = tonumber(v[3])
  d.ublock = tonumber(v[4])
  d.saved = { d.inflight, d.tpmUsed, d.cool, d.ublock }
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

--- Adds to a deployment's in-flight count (cached when loaded, else straight in Redis).
local function addInflight(d, delta)
  if d.loaded then
    d.inflight = math.max(0, d.inflight + delta)
  elseif redis.call('HINCRBY', d.key, 'inflight', delta) < 0 then
    redis.call('HSET', d.key, 'inflight', 0)
  end
end

local function addTpm(d, delta)
  if d.loaded then
    d.tpmUsed = math.max(0, d.tpmUsed + delta)
  elseif redis.call('HINCRBY', d.key, 'tpm', delta) < 0 then
    redis.call('HSET', d.key, 'tpm', 0)
  end
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
  for _, d in ipairs(DEPS) do
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
  for _, d in ipairs(DEPS) do
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

-- Waiters and grants -----------------------------------------------------------------------------------

local function parseWaiter(rec)
  local owner, prio, enq, dl, tok, seq, round, tenant =
    string.match(rec, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return {
    owner = owner, prio = prio, enq = tonumber(enq), deadline = tonumber(dl), tokens = tonumber(tok),
    tokensStr = tok, seq = seq, round = round, tenant = tenant,
  }
end

local function ownerOf(rec)
  return string.match(rec, '^([^\t]*)\t')
end

local function member(round, seq, id)
  return string.format('%015d%015d', tonumber(round), tonumber(seq)) .. id
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

--- Ends a grant: frees its slot, reconciles tpm, applies the cooldown policy. Returns (until, reason).
local function releaseGrant(gid, rec, kind, tokensUsed, failure, retryAfterMs, message)
  -- Only its deployment and tokens are needed (a full parseGrant costs more than the rest of a release).
  local g = grantDeployment(rec)
  redis.call('HDEL', K.grants, gid)
  local d = DEP_BY_ID[g.dep]
  if d == nil then return nil end
  -- Loaded now: the grant step after a release reads the deployment anyway, and the counters changed
  -- in the cache are written once, by finish().
  load(d)
  addInflight(d, -1)
  if kind == 'ok' and tokensUsed and d.tpm then
    local old = gid .. '\t' .. g.tokens
    local at = redis.call('ZSCORE', d.ktpm, old)
    -- Only a record still inside the window counts; an older one no longer weighs on the limit.
    if at and tonumber(at) > NOW - WINDOW then
      redis.call('ZREM', d.ktpm, old)
      redis.call('ZADD', d.ktpm, at, gid .. '\t' .. int(tokensUsed))
      addTpm(d, tokensUsed - (tonumber(g.tokens) or 0))
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

-- Leases -----------------------------------------------------------------------------------------------

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
      releaseGrant(all[i], all[i + 1], 'cancelled', nil, nil, nil)
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

-- Mail ---------------------------------------------------------------------------------------------------

--- Puts a grant decided for another instance's waiter in that instance's mailbox, and in the message
--- this script will send it (`g` below), so it can deliver it without a round trip.
local function mailGrant(owner, gid, g)
  local n = NOTIFY[owner]
  if n == nil then
    n = { claim = false, recs = {} }
    NOTIFY[owner] = n
  end
  n.recs[#n.recs + 1] = gid .. '\t' .. g.rid .. '\t' .. g.dep .. '\t' .. g.tokens .. '\t' .. g.at .. '\t' .. g.waited .. '\t' .. g.prio .. '\t' .. g.seq
  return gid
end

--- Tells `owner` (by this script's message) to claim its mail.
local function notifyClaim(owner)
  local n = NOTIFY[owner]
  if n == nil then
    n = { claim = true, recs = {} }
    NOTIFY[owner] = n
  end
  n.claim = true
end

--- Puts an expiry of another instance's waiter in its mailbox; that instance is told to claim its mail.
local function mailExpired(owner, id)
  redis.call('ZADD', K.mail, 0, owner .. '\0x\0' .. id)
  notifyClaim(owner)
end

--- Puts a displacement of a waiter (a better arrival took its place in the full queue) in its owner's
--- mailbox, with the Retry-After its 429 carries; claimed like an expiry (claimMail). The caller's own
--- waiters need no message: the grant step that follows every accepted enqueue claims the mail.
--- `kind` 'u' instead: its deadline became certainly unreachable (answered 429 queue_timeout_certain).
--- `kind` 'f': every deployment fails (503 upstream_unavailable); `extra`: tab and the last upstream error.
local function mailDisplaced(owner, id, seconds, kind, extra)
  redis.call('ZADD', K.mail, 0, owner .. '\0' .. (kind or 'd') .. '\0' .. id .. '\t' .. int(seconds) .. (extra or ''))
  if owner == ME then MAIL_ME = true else notifyClaim(owner) end
end

--- Tells each instance that got mail in this script. Message 'g' .. model .. NUL .. grants (records of
--- the 8 fields of pushGrant, tab-separated, NUL between records) when it got grants: it delivers them
--- from the message (its mailbox keeps them until it next claims, so a lost message loses nothing); a
--- last record 'm' when it got other mail too: claim it. Otherwise 'm' .. model: claim your mail.
local function notifyAll()
  local plain = string.find(S.model, '\0', 1, true) ~= nil
  for o, n in pairs(NOTIFY) do
    if plain or #n.recs == 0 then
      redis.call(S.pub, S.chan .. o, 'm' .. S.model)
    else
      redis.call(S.pub, S.chan .. o, 'g' .. S.model .. '\0' .. table.concat(n.recs, '\0') .. (n.claim and '\0m' or ''))
    end
  end
end

--- Takes the caller's undelivered grants, expiries and displacements out of the mailbox.
local function claimMail(grants, expired)
  -- Claimed once per call, again only when this call put mail for the caller (other instances' mail
  -- cannot arrive meanwhile).
  if MAIL_CLAIMED and not MAIL_ME then return end
  MAIL_CLAIMED, MAIL_ME = true, false
  local lo, hi = ownerRange(ME)
  local items = redis.call('ZRANGEBYLEX', K.mail, lo, hi)
  if #items == 0 then return end
  local n = #ME
  for _, m in ipairs(items) do
    local kind = string.sub(m, n + 2, n + 2)
    local key = string.sub(m, n + 4)
    if kind == 'g' then
      local rec = redis.call('HGET', K.grants, key)
      if rec then pushGrant(grants, key, parseGrant(rec)) end
    elseif kind == 'd' or kind == 'u' or kind == 'f' then
      -- A displaced or unreachable waiter travels with the expiries, marked: NUL, kind, id, tab,
      -- Retry-After seconds.
      expired[#expired + 1] = '\0' .. kind .. key
    else
      expired[#expired + 1] = key
    end
  end
  redis.call('ZREMRANGEBYLEX', K.mail, lo, hi)
end

-- End of every script ----------------------------------------------------------------------------------

--- Writes back cached deployment counters and depth changes, then sends the notifications.
local function finish()
  if BATCH then return end
  for _, d in ipairs(DEPS) do
    if d.loaded then
      if d.inflight ~= d.saved[1] or d.tpmUsed ~= d.saved[2] then
        redis.call('HSET', d.key, 'inflight', int(d.inflight), 'tpm', int(d.tpmUsed))
      end
      if d.cool ~= d.saved[3] then
        if d.cool then redis.call('HSET', d.key, 'cool', int(d.cool)) else redis.call('HDEL', d.key, 'cool') end
      end
      if d.ublock ~= d.saved[4] and d.ublock then redis.call('HSET', d.key, 'ublock', int(d.ublock)) end
    end
  end
  for prio, delta in pairs(DEPTH) do
    if delta ~= 0 and redis.call('HINCRBY', K.depth, prio, delta) <= 0 then redis.call('HDEL', K.depth, prio) end
  end
  if #ROUNDS_SET > 0 then
    local fields, seen = {}, {}
    for _, f in ipairs(ROUNDS_SET) do
      if not seen[f] then
        seen[f] = true
        fields[#fields + 1] = f
        fields[#fields + 1] = ROUNDS[f]
      end
    end
    redis.call('HSET', K.rounds, unpack(fields))
    ROUNDS_SET = {}
  end
  notifyAll()
end

-- The grant step --------------------------------------------------------------------------------------

--- The start of a grant step, once per script: reaps instances whose lease lapsed, ends lapsed
--- cooldowns (collected in ENDED, reported by the script's first grant step).
local function beginStep()
  if ENDED ~= nil then return end
  ENDED = {}
  reapDead()
  for _, d in ipairs(DEPS) do
    load(d)
    if d.cool ~= nil and NOW >= d.cool then
      d.cool = nil
      ENDED[#ENDED + 1] = d.id
    end
  end
end

--- The cooldowns ended in this script, the first time they are asked for.
local function takeEnded()
  local e = ENDED or {}
  ENDED = {}
  return e
end

--- Counts `count` grants in the current second: Retry-After reads them only where max_parallel_requests
--- alone bounds a deployment (not ETA_KNOWN), so only then are they counted.
local function countGrants(count)
  if ETA_KNOWN then return end
  local sec = math.floor(NOW / 1000)
  if redis.call('HINCRBY', K.rate, sec, count) == count then
    -- A new second began: forget seconds older than a minute.
    for _, f in ipairs(redis.call('HKEYS', K.rate)) do
      if tonumber(f) <= sec - 60 then redis.call('HDEL', K.rate, f) end
    end
  end
end

--- The grants of one grant step, gathered so that each key is written by one variadic call (writeGrants).
--- `out`: the list the caller's own grants are appended to (pushGrant); others' go to their owners' mail.
local function newGrants(out)
  -- (mail, rpm and tpm tables are made when first needed: most steps grant one waiter of the caller.)
  return { count = 0, suffix = nil, counter = nil, out = out, records = {}, served = {}, rounds = nil }
end

--- Records the grant of waiter `w` (parseWaiter's fields; its round and seq as strings) with request id
--- `id` on deployment `d`: the deployment's limits (in flight now, rpm and tpm at writeGrants), the grant
--- record, the round served at its priority. Returns the grant id: request id / server ms . grant step
--- counter (one INCR per step: unique even if Redis lost its data meanwhile).
local function recordGrant(b, d, id, w)
  if b.suffix == nil then
    b.counter = redis.call('INCR', K.gseq)
    b.suffix = '/' .. NOWS .. '.' .. b.counter
  end
  local gid = id .. b.suffix
  b.count = b.count + 1
  d.inflight = d.inflight + 1
  if d.rpm then
    d.rpmUsed = d.rpmUsed + 1
    b.rpm = b.rpm or {}
    local t = b.rpm[d] or {}
    t[#t + 1] = NOWS
    t[#t + 1] = gid
    b.rpm[d] = t
  end
  if d.tpm then
    d.tpmUsed = d.tpmUsed + w.tokens
    b.tpm = b.tpm or {}
    local t = b.tpm[d] or {}
    t[#t + 1] = NOWS
    t[#t + 1] = gid .. '\t' .. w.tokensStr
    b.tpm[d] = t
  end
  local s = b.served[w.prio]
  if s == nil then
    s = { was = tonumber((roundsGet('s\0' .. w.prio))) or 0 }
    b.served[w.prio] = s
  end
  local round = tonumber(w.round)
  if round > (s.now or s.was) then s.now = round end
  local g = { owner = w.owner, dep = d.id, tokens = w.tokensStr, at = NOWS, waited = int(NOW - w.enq),
              prio = w.prio, seq = w.seq, rid = id }
  local r = b.records
  r[#r + 1] = gid
  r[#r + 1] = grantRecord(g)
  if w.owner == ME then
    pushGrant(b.out, gid, g)
  else
    b.mail = b.mail or {}
    b.mail[#b.mail + 1] = 0
    b.mail[#b.mail + 1] = w.owner .. '\0g\0' .. mailGrant(w.owner, gid, g)
  end
  return gid
end

--- Writes the grants recorded in `b`: their records, mail, rpm and tpm window entries, the rounds served
--- (with `b.rounds`: other round fields the caller adds to the same write), the grant count.
local function writeGrants(b)
  if b.count == 0 then return end
  redis.call('HSET', K.grants, unpack(b.records))
  if b.mail then redis.call('ZADD', K.mail, unpack(b.mail)) end
  if b.rpm then
    for d, t in pairs(b.rpm) do redis.call('ZADD', d.krpm, unpack(t)) end
  end
  if b.tpm then
    for d, t in pairs(b.tpm) do redis.call('ZADD', d.ktpm, unpack(t)) end
  end
  local rounds = b.rounds or {}
  for prio, s in pairs(b.served) do
    if s.now ~= nil then
      rounds[#rounds + 1] = 's\0' .. prio
      rounds[#rounds + 1] = int(s.now)
    end
  end
  if #rounds > 0 then roundsSet(rounds) end
  countGrants(b.count)
end

--- The end of a grant step: claims the caller's mail, then the 6 pump fields of a reply:
---   waiting, next wake (server ms) or '', more 1 | 0, grants (8 strings each, see pushGrant),
---   expired ids, deployments whose cooldown ended.
--- `more`: the batch cap was reached with waiters left; `blockedTokens`: the head could not go.
local function endStep(grants, expired, waiting, more, blockedTokens)
  claimMail(grants, expired)
  local wake = nil
  if more then
    wake = NOW
  else
    if waiting > 0 then
      local first = redis.call('ZRANGE', K.deadlines, 0, 0, 'WITHSCORES')
      if first[2] then wake = tonumber(first[2]) end
    end
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
  local wakeStr = ''
  if wake ~= nil then wakeStr = int(wake) end
  local m = 0
  if more then m = 1 end
  return { waiting, wakeStr, m, grants, expired, takeEnded() }
end

--- The grant step: ends lapsed cooldowns, expires overdue waiters, then grants waiters strictly in
--- global queue order while a deployment has headroom (up to `cap` grants), choosing the least-loaded
--- deployment and recording every limit (in flight, rpm, tpm). Grants and expiries of waiters owned by
--- other instances go to their mailbox (their owners are told by finish()); the caller's own mail is
--- claimed too. Reaps instances whose lease lapsed first. The caller renews its own lease (touchLease)
--- and calls finish() at the end. Returns the 6 pump fields of a reply (see endStep).
local function pumpGroup(cap)
  local grants, expired = {}, {}
  beginStep()
  local waiting = waitingCount()
  if waiting == 0 then return endStep(grants, expired, 0, false, nil) end

  local overdue = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', NOW, 'LIMIT', 0, 1000)
  for _, id in ipairs(overdue) do
    local rec = redis.call('HGET', K.waiters, id)
    if rec then
      local w = parseWaiter(rec)
      removeWaiter(id, w)
      waiting = waiting - 1
      if w.owner == ME then
        expired[#expired + 1] = id
      else
        mailExpired(w.owner, id)
      end
    else
      redis.call('ZREM', K.deadlines, id)
    end
  end

  -- Grant from the head. Granted waiters stay in the ZSET until the end (one variadic call per key), so
  -- the scan reads further heads at an offset.
  local count, offset, blockedTokens = 0, 0, nil
  local b = newGrants(grants)
  local takenMembers, takenIds = {}, {}
  -- Heads are read in chunks no larger than what capacity can take (plus the one that will wait).
  local room = headroom()
  while waiting > 0 and count < cap and blockedTokens == nil do
    local heads = redis.call('ZRANGE', K.queue, offset, offset + math.min(64, cap - count, math.max(1, room - count + 1)) - 1)
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
        waiting = waiting - 1
        takenMembers[#takenMembers + 1] = heads[j]
        takenIds[#takenIds + 1] = id
        addDepth(w.prio, -1)
        recordGrant(b, d, id, w)
        if count >= cap then break end
      end
    end
  end

  if #takenMembers > 0 then redis.call('ZREM', K.queue, unpack(takenMembers)) end
  if count > 0 then
    redis.call('ZREM', K.deadlines, unpack(takenIds))
    redis.call('ZREM', K.enqueued, unpack(takenIds))
    redis.call('HDEL', K.waiters, unpack(takenIds))
    addWaiting(-#takenIds)
    writeGrants(b)
  end
  return endStep(grants, expired, waiting, waiting > 0 and blockedTokens == nil and count >= cap, blockedTokens)
end

--- Appends the 6 pump fields of `p` (a pumpGroup result) to `reply`, or 6 empty strings when p is nil.
--- An empty list goes as '': Redis 7.0 turns each table of a reply into RESP at a cost of its own, even
--- an empty one (docs/performance.md); redis-protocol.ts reads '' as an empty list.
local function withPump(reply, p)
  local n = #reply
  for i = 1, 6 do
    local v = ''
    if p then
      v = p[i]
      if i >= 4 and #v == 0 then v = '' end
    end
    reply[n + i] = v
  end
  return reply
end

--- Two grant steps of one script as one result: the grants, expiries and ended cooldowns of both, the
--- waiting count, wake and `more` of the second.
local function mergePumps(a, b)
  if a == nil then return b end
  for k = 4, 6 do
    for _, v in ipairs(b[k]) do a[k][#a[k] + 1] = v end
  end
  a[1], a[2], a[3] = b[1], b[2], b[3]
  return a
end

-- Retry-After --------------------------------------------------------------------------------------------

local function grantsLastMinute()
  local sec = math.floor(NOW / 1000)
  local all = redis.call('HGETALL', K.rate)
  local sum = 0
  for i = 1, #all, 2 do
    if tonumber(all[i]) > sec - 60 then sum = sum + tonumber(all[i + 1]) else redis.call('HDEL', K.rate, all[i]) end
  end
  return sum
end

-- Grant estimate (src/machines/grant-estimate.ts) ------------------------------------------------------

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
  for _, d in ipairs(DEPS) do
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
  for _, d in ipairs(DEPS) do h = math.max(h, readyAt(d)) end
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
  for _, d in ipairs(DEPS) do
    local a = nextCapacityAt(d, tokens, true)
    if own == nil or a < own then own = a end
  end
  return math.max(at, own)
end

--- Whether a waiter with `ahead` waiters before it, reserving `tokens`, could be granted by t at all.
local function grantableBy(ahead, tokens, t)
  if not reachable(ahead, t) then return false end
  for _, d in ipairs(DEPS) do
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
  for _, d in ipairs(DEPS) do
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

-- Displacement ----------------------------------------------------------------------------------------

--- Priority decides who is shed: when an arrival of queue rank `rank` finds the queue full, the waiter
--- served last (the ZSET's tail: worst rank, then the latest round and arrival) leaves for it if the
--- arrival's rank is strictly better. The displaced waiter is answered through its owner's mail.
--- Returns the waiter to displace ({id, w}), or nil when the arrival is no better than the worst.
local function worstBelow(rank)
  local worst = redis.call('ZRANGE', K.queue, -1, -1, 'WITHSCORES')
  if worst[1] == nil or not (rank < tonumber(worst[2])) then return nil end
  local id = string.sub(worst[1], 31)
  local rec = redis.call('HGET', K.waiters, id)
  if not rec then return nil end
  return { id = id, w = parseWaiter(rec) }
end

--- Takes `victim` (from worstBelow) out of the queue and tells its owner.
local function displace(victim)
  removeWaiter(victim.id, victim.w)
  mailDisplaced(victim.w.owner, victim.id, retryAfterSeconds(victim.w.tokens))
end

-- Operations --------------------------------------------------------------------------------------------

--- Each script's body by name: redis-library.ts defines them below, and registers one function per
--- script that runs begin() and its body.
local OPS = {}

--- Several operations of one instance on one group in one call (redis-store.ts sends those one turn of
--- its event loop issues as one): after the common prefix, for each operation its name, its number of
--- arguments, then them. Each runs as its own script would, in order, and sees what the ones before it
--- did; the writes each leaves to finish() are made once, at the end. Returns one reply per operation
--- (an error reply in its place, e.g. an enqueue of an id already waiting).
local function batch(KEYS, ARGV)
  local last = #ARGV
  if string.sub(ARGV[last], 1, 6) == 'clock:' then last = last - 1 end
  local replies = {}
  local i = A
  BATCH = true
  while i <= last do
    local op, n = OPS[ARGV[i]], tonumber(ARGV[i + 1])
    A = i + 2
    LOST, REAPED = 0, 0
    for _, d in ipairs(DEPS) do d.ready = nil end
    replies[#replies + 1] = op(KEYS, ARGV)
    i = i + 2 + n
  end
  BATCH = false
  finish()
  return replies
end

-- (the scripts follow: redis-library.ts)
