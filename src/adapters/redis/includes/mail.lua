-- mail.lua: results for other instances (KEYS[7]): grants, expiries, displacements put in their
-- mailbox, the messages telling them (notifyAll), claiming the caller's own mail. Uses state.lua,
-- waiters-grants.lua (pushGrant, parseGrant) and leases.lua (ownerRange).

--- Puts a grant decided for another instance's waiter in that instance's mailbox, and in the message
--- this script will send it (`g` below), so it can deliver it without a round trip. `line`: the grant
--- as grantLine gives it.
local function mailGrant(owner, gid, line)
  local n = NOTIFY[owner]
  if n == nil then
    n = { claim = false, recs = {} }
    NOTIFY[owner] = n
  end
  n.recs[#n.recs + 1] = line
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
