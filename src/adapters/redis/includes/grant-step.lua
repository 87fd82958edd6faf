-- grant-step.lua: the grant step (pumpGroup): reaps, ends cooldowns, expires overdue waiters, grants in
-- queue order, records and writes the grants, the pump fields of a reply and the reply as one string (withPump, flat, mergePumps).
-- Uses state.lua, rounds.lua, deployments.lua, waiters-grants.lua, leases.lua (reapDead) and mail.lua.

--- The start of a grant step, once per script: reaps instances whose lease lapsed, ends lapsed
--- cooldowns (collected in ENDED, reported by the script's first grant step).
local function beginStep()
  if ENDED ~= nil then return end
  ENDED = {}
  reapDead()
  for di = 1, ND do
    local d = DEPS[di]
    load(d)
    if d.cool ~= nil and NOW >= d.cool then
      d.cool = nil
      ENDED[#ENDED + 1] = d.id
    end
  end
end

--- The list of a grant step's ended cooldowns when none ended: shared by every call, never added to
--- (mergePumps makes new lists).
local NONE_ENDED = {}

--- The cooldowns ended in this script, the first time they are asked for.
local function takeEnded()
  local e = ENDED
  ENDED = NONE_ENDED
  if e == nil or #e == 0 then return NONE_ENDED end
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
--- `out`: the list the caller's own grants are appended to (grantLine); others' go to their owners' mail.
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
    b.counter = nextGrantCounter()
    b.suffix = '/' .. NOWS .. '.' .. int(b.counter)
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
    d.itpm = d.itpm + w.tokens
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
  local round = num(w.round)
  if round > (s.now or s.was) then s.now = round end
  local g = { owner = w.owner, dep = d.id, tokens = w.tokensStr, at = NOWS, waited = int(NOW - w.enq),
              prio = w.prio, seq = w.seq, rid = id }
  local r = b.records
  r[#r + 1] = gid
  r[#r + 1] = grantRecord(g)
  -- The caller's own grant goes in its reply as one line (one string, not 8).
  local line = grantLine(gid, g)
  if w.owner == ME then
    b.out[#b.out + 1] = line
  else
    b.mail = b.mail or {}
    b.mail[#b.mail + 1] = 0
    b.mail[#b.mail + 1] = w.owner .. '\0g\0' .. mailGrant(w.owner, gid, line)
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

--- The end of a grant step: claims the caller's mail, then the grant step's 6 results (withPump puts them in a reply):
---   waiting, next wake (server ms) or '', more 1 | 0, grants (each one grantLine, or 8 strings from
---   claimed mail: pushGrant; pumpLists joins both alike),
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
    for di = 1, ND do
      local d = DEPS[di]
      if coolingDown(d) and (wake == nil or d.cool < wake) then wake = d.cool end
    end
    if blockedTokens ~= nil then
      for di = 1, ND do
        local d = DEPS[di]
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
--- and calls finish() at the end. Returns the grant step's 6 results (see endStep).
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

--- Appends the 3 scalar pump fields of `p` (a pumpGroup result) to `reply`: waiting, next wake or '',
--- more; '' each when p is nil. Its 3 lists (grants, expired, cooldowns ended) go to flat(reply, p),
--- which sends them after the fields.
local function withPump(reply, p)
  local n = #reply
  if p then
    reply[n + 1], reply[n + 2], reply[n + 3] = int(p[1]), p[2], int(p[3])
  else
    reply[n + 1], reply[n + 2], reply[n + 3] = '', '', ''
  end
  return reply
end

--- The expired list of a grant step as 4 tab-separated fields per entry: kind, id, Retry-After seconds,
--- message. Kind x: expired (plain id, includes/mail.lua claimMail); d, u, f: displaced, unreachable,
--- unavailable (NUL + kind + id + tab + seconds [+ tab + message]).
local function endingFields(expired)
  local out = {}
  for i, e in ipairs(expired) do
    if string.byte(e, 1) == 0 then
      local kind = string.sub(e, 2, 2)
      if kind == 'f' then out[i] = 'f\t' .. string.sub(e, 3) else out[i] = kind .. '\t' .. string.sub(e, 3) .. '\t' end
    else
      out[i] = 'x\t' .. e .. '\t\t'
    end
  end
  return table.concat(out, '\t')
end

--- The 3 scalar pump fields of `p` as one string: waiting, next wake or '', more ('' each when p is nil).
local function pumpFields(p)
  if p == nil then return '\t\t' end
  return int(p[1]) .. '\t' .. p[2] .. '\t' .. int(p[3])
end

--- The tail of a reply in ONE string (see flat): NUL and the grant step `p`'s grants (8 fields each, see
--- pushGrant), NUL and its expired list (endingFields), NUL and its ended cooldowns (deployment ids); a
--- list is '' when empty.
local function pumpLists(p)
  if p == nil or (#p[4] == 0 and #p[5] == 0 and #p[6] == 0) then return '\0\0\0' end
  local grants, endings, ended = '', '', ''
  -- (One grant, the common case, is one grantLine already.)
  if #p[4] == 1 then grants = p[4][1] elseif #p[4] > 0 then grants = table.concat(p[4], '\t') end
  if #p[5] > 0 then endings = endingFields(p[5]) end
  if #p[6] > 0 then ended = table.concat(p[6], '\t') end
  return '\0' .. grants .. '\0' .. endings .. '\0' .. ended
end

--- A reply of enqueue, release or pump as ONE string: its fields tab-separated, then pumpLists(p). No
--- field holds a tab or NUL (ids are checked by redis-store.ts checkIdentifier, messages cleaned by the
--- caller). Redis 7.0 turns each element of a table reply into RESP at a cost of its own (most of a
--- batch's reply time: docs/multi-instance.md, throughput), one string once. Read by redis-protocol.ts.
--- Its fields are strings but for LOST and REAPED (a number given to table.concat is formatted by a
--- sprintf). The hottest replies (an arrival granted at once, a release, a pump) are built by one
--- concatenation instead, without a table: the same layout.
local function flat(reply, p)
  reply[1], reply[3] = int(reply[1]), int(reply[3])
  return table.concat(reply, '\t') .. pumpLists(p)
end

--- Two grant steps of one script as one result: the grants, expiries and ended cooldowns of both, the
--- waiting count, wake and `more` of the second.
local function mergePumps(a, b)
  if a == nil then return b end
  local merged = { b[1], b[2], b[3], {}, {}, {} }
  for k = 4, 6 do
    local list = merged[k]
    for _, v in ipairs(a[k]) do list[#list + 1] = v end
    for _, v in ipairs(b[k]) do list[#list + 1] = v end
  end
  return merged
end
