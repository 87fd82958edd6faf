--[[
enqueue.lua: adds a waiter to the group's global queue (or refuses it: queue full), atomically. With a
batch cap, the grant step (includes/grant-step.lua pumpGroup, as pump.lua) follows in the same script, so an arrival
with headroom is granted in the same round trip; a full queue is then judged after a grant step (as
MemoryStore: a burst can fill the queue before a pump runs), and an arrival of better rank than the
waiter served last takes that waiter's place (includes/displacement.lua worstBelow, displace).
KEYS: the group layout of lib.lua (KEYS[1..13] group keys, then 4 per deployment).
ARGV: the common prefix of lib.lua (ARGV[1 .. A-1]), then
  ARGV[A]   request id                 ARGV[A+1] priority          ARGV[A+2] tenant
  ARGV[A+3] ms it has waited (caller's now - enqueuedAt, >= 0)
  ARGV[A+4] ms left to its deadline (deadline - caller's now)
            (Times relative to the caller's now: clock skew cancels out, and short numbers parse faster.)
  ARGV[A+5] tokens (tpm estimate)      ARGV[A+6] seq or '' (a retry keeps its seq and round)
  ARGV[A+7] round or ''
  ARGV[A+8] rank (queue-order.ts orderRank, computed by the caller on enqueuedAt moved to server time
            by its stable clock offset), or '' to compute it here
  ARGV[A+9] batch cap of the grant step, or '' for no grant step
  ARGV[A+10] not after (server ms), or '': run later than this (Redis stalled past the caller's command
            timeout, so the caller has given up and answered its request), the script changes nothing
  ARGV[A+11] '1' when a full queue may make room by displacing its worst waiter (includes/displacement.lua worstBelow),
            '' when not (the caller pumps first and asks again, as MemoryStore grants before judging)
  (The per-priority bounds are in the common prefix: lib.lua.)
Returns ONE string (includes/grant-step.lua flat: the fields below tab-separated, then the grant step's lists):
   LOST, NOW, REAPED, 1, seq, position, round, grant counter at the enqueue, pumped 1 | 0, pump,
         estimated grant time (server ms; includes/grant-estimate.lua earliestGrant) or '' when unknown
or LOST, NOW, REAPED, 0, retryAfterSeconds, '', '', '', pumped 1 | 0, pump (queue full)
or LOST, NOW, REAPED, 0, retryAfterSeconds, 'certain', '', '', pumped 1 | 0, pump (its deadline certainly
   passes before it could be granted: retryAfterSeconds is that bound)
or LOST, NOW, REAPED, 0, retryAfterSeconds, 'unavailable', last upstream error, '', 0 (every deployment
   cools down after failures that are not 429s: retryAfterSeconds until the first comes back)
or LOST, NOW, REAPED, 0, 'late', '', '', '', 0 (past not-after; nothing done), where pump
is the 3 fields of pump.lua's reply after its head ('' each when not pumped); an error reply when the id
is already waiting. Any grant of this waiter has a larger grant counter than the one returned.
]]
local id, prio, tenant = ARGV[A], ARGV[A + 1], ARGV[A + 2]
local waited, remaining = num(ARGV[A + 3]), num(ARGV[A + 4])
local tokens, seqArg, roundArg = ARGV[A + 5], ARGV[A + 6], ARGV[A + 7]
local tok = num(tokens)
local rankArg = ARGV[A + 8]
local cap = optnum(ARGV[A + 9])
local notAfter = optnum(ARGV[A + 10])
local mayDisplace = ARGV[A + 11] == '1'
local BOUNDS = nil
local boundsArg = S.bounds or ''
if boundsArg ~= '' then
  BOUNDS = {}
  for t, m in string.gmatch(boundsArg, '(-?%d+):(%d+)') do BOUNDS[#BOUNDS + 1] = { min = tonumber(t), max = tonumber(m) } end
end

--- Of the bounds this arrival falls under, the narrowest that is full (config-queue-bounds.ts fullBound),
--- counted from the depth hash and this script's pending depth changes.
local function fullBound()
  if BOUNDS == nil then return nil end
  local p = tonumber(prio)
  local depth = redis.call('HGETALL', K.depth)
  local full = nil
  for _, b in ipairs(BOUNDS) do
    if p >= b.min then
      local n = 0
      for i = 1, #depth, 2 do
        if tonumber(depth[i]) >= b.min then n = n + tonumber(depth[i + 1]) end
      end
      for q, delta in pairs(DEPTH) do
        if tonumber(q) >= b.min then n = n + delta end
      end
      if n >= b.max then full = b end
    end
  end
  return full
end

--- Refuses the arrival, kind '' (queue full) or 'certain' (its deadline cannot be met), with the results
--- of the grant step `p` when one ran.
local function refuse(seconds, kind, p)
  finish()
  local reply = { LOST, NOWS, REAPED, '0', int(seconds), kind, '', '', '0' }
  if p then reply[9] = '1' end
  return flat(withPump(reply, p), p)
end

-- Before anything changes: a leftover of a timed-out call must not queue (or be granted, which would
-- count in the deployment's rpm/tpm window for a minute) a request whose caller was already answered.
if notAfter and NOW > notAfter then
  return flat({ LOST, NOWS, REAPED, '0', 'late', '', '', '', '0' })
end

local n = waitingCount()
if n > 0 and redis.call('HEXISTS', K.waiters, id) == 1 then
  return redis.error_reply('request ' .. id .. ' is already waiting')
end
-- The owner of a waiter must hold a lease, or nobody could reclaim the waiter if the owner died.
touchLease()
-- Every deployment cools down after failing: nothing to wait for but the first to come back.
do
  local back, message = unavailable()
  if back then
    finish()
    return flat({ LOST, NOWS, REAPED, '0', int(secondsUntil(back)), 'unavailable', message or '', '', '0' })
  end
end
local retry = seqArg ~= ''
-- Caller times become server times by their distance from the caller's now (clock skew cancels out).
local enq = NOW - math.max(0, waited)
local dl = NOW + remaining
local rank = optnum(rankArg)
if rank == nil then
  -- queue-order.ts orderRank: priority, or with aging priority * agingMs + enqueuedAt.
  rank = tonumber(prio)
  if S.aging then rank = rank * S.aging + enq end
end
local p, victim = nil, nil
-- A retry was admitted before: it re-enters even when the queue is full, at its old place.
if not retry and (n >= S.maxq or fullBound()) then
  if cap then
    p = pumpGroup(cap)
    n = p[1]
  end
  local bound = fullBound()
  local full = p == nil or n >= S.maxq or bound ~= nil
  if full and mayDisplace then
    victim = worstBelow(rank)
    -- Only a waiter of the full bound's class can give up its place to this arrival.
    if victim and bound and tonumber(victim.w.prio) < bound.min then victim = nil end
  end
  if full and victim == nil then
    return refuse(retryAfterSeconds(tok), '', p)
  end
end

-- A deadline that certainly cannot be met is answered now, not when it passes (and displaces nobody).
-- Only waiters of strictly better rank are sure to be ahead before its round is drawn. (`n`: the waiters
-- now, after any grant step above.)
local first = nil
if n == 0 then first = pick(tok) end
local waits = n > 0 or first == nil
if waits then
  -- A deployment without an rpm limit that could take it now but for calls in flight: nothing is certain.
  local unbounded = false
  for di = 1, ND do
    local d = DEPS[di]
    if not d.rpm and nextCapacityAt(d, tok, true) <= NOW then unbounded = true end
  end
  if not unbounded then
    local ahead = redis.call('ZCOUNT', K.queue, '-inf', '(' .. string.format('%.17g', rank))
    if not grantableBy(ahead, tok, dl) then
      local at = earliestGrant(ahead, tok, horizon())
      local seconds = 3600
      if at then seconds = secondsUntil(at) end
      return refuse(seconds, 'certain', p)
    end
  end
end
if victim then
  displace(victim)
  n = n - 1
end

local seq
if retry then seq = num(seqArg) else seq = nextSeq() end
local round, served
local roundFields = {}
if roundArg ~= '' then
  round = num(roundArg)
else
  -- Fair rounds: a tenant's next request at this priority goes one round after its previous one,
  -- and never before the round being served.
  local tkey = 't\0' .. prio .. '\0' .. tenant
  local s, t = roundsGet('s\0' .. prio, tkey)
  local last = tonumber(t)
  served = tonumber(s) or 0
  if last == nil then round = served else round = math.max(last + 1, served) end
  roundFields[1] = tkey
  roundFields[2] = int(round)
end

local seqS, roundS = int(seq), int(round)

-- Fast path: the grant step of an arrival at an empty queue, when a deployment can take it now, is that
-- arrival's grant. It is made directly (the same recordGrant as pumpGroup), without writing the waiter to
-- the queue and taking it out again; Redis ends in the same state as by the general path below.
if cap and n == 0 and dl > NOW then
  beginStep()
  if REAPED == 0 or waitingCount() == 0 then
    -- The deployment picked above, unless capacity moved since: the step reaped dead instances (their
    -- grants were released), or a displaced waiter left the queue empty only now.
    local d = first
    if REAPED > 0 or victim then d = pick(tok) end
    if d then
      local grants = {}
      local b = newGrants(grants)
      -- The rounds read above: the served round is known, and the tenant's round goes in the same write.
      if served ~= nil then b.served[prio] = { was = served } end
      b.rounds = roundFields
      recordGrant(b, d, id, { owner = ME, prio = prio, enq = enq, tokens = tok, tokensStr = tokens, seq = seqS, round = roundS })
      writeGrants(b)
      -- (Merged: a full queue's grant step above may have granted others already.)
      p = mergePumps(p, endStep(grants, {}, 0, false, nil))
      finish()
      -- The grant counter before this grant: its own grant's is larger. (flat()'s layout, built at once.)
      return int(LOST) .. '\t' .. NOWS .. '\t' .. int(REAPED) .. '\t1\t' .. seqS .. '\t0\t' .. roundS .. '\t'
        .. int(b.counter - 1) .. '\t1\t' .. pumpFields(p) .. '\t' .. NOWS .. pumpLists(p)
    end
  end
end

local gseq = int(grantCounter())
if #roundFields > 0 then roundsSet(roundFields) end

local m = member(round, seq, id)
redis.call('ZADD', K.queue, string.format('%.17g', rank), m)
redis.call('ZADD', K.deadlines, int(dl), id)
redis.call('ZADD', K.enqueued, int(enq), id)
redis.call('HSET', K.waiters, id,
  ME .. '\t' .. prio .. '\t' .. int(enq) .. '\t' .. int(dl) .. '\t' .. tokens .. '\t' .. seqS .. '\t' .. roundS .. '\t' .. tenant)
addWaiting(1)
addDepth(prio, 1)
local position = redis.call('ZRANK', K.queue, m)
-- Its estimated grant time, from its place in line (before the grant step below changes the windows).
local eta = NOW
if waits then
  eta = nil
  if ETA_KNOWN then eta = earliestGrant(position, tok, horizon()) end
end
if cap then p = mergePumps(p, pumpGroup(cap)) end
finish()
-- (flat()'s layout, built at once.)
return int(LOST) .. '\t' .. NOWS .. '\t' .. int(REAPED) .. '\t1\t' .. seqS .. '\t' .. int(position) .. '\t' .. roundS .. '\t'
  .. gseq .. '\t' .. (p and '1' or '0') .. '\t' .. pumpFields(p) .. '\t' .. (eta and int(eta) or '') .. pumpLists(p)
