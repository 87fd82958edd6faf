--[[
sync.lua: everything the caller owns, for reconciliation after an error or a lost lease: its waiters,
its grants (delivered or not) and its undelivered expiries. The caller's mail is emptied: the caller
delivers from this answer what it had not delivered yet.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, waiter ids, grants (8 strings each), expired ids}.
]]
local waiters, grants, expired = {}, {}, {}
local lo, hi = ownerRange(ME)
local n = #ME
for _, m in ipairs(redis.call('ZRANGEBYLEX', K.owned, lo, hi)) do
  local kind = string.sub(m, n + 2, n + 2)
  local key = string.sub(m, n + 4)
  if kind == 'w' then
    waiters[#waiters + 1] = key
  else
    local rec = redis.call('HGET', K.grants, key)
    if rec then pushGrant(grants, key, parseGrant(rec)) end
  end
end
for _, m in ipairs(redis.call('ZRANGEBYLEX', K.mail, lo, hi)) do
  if string.sub(m, n + 2, n + 2) == 'x' then expired[#expired + 1] = string.sub(m, n + 4) end
end
redis.call('ZREMRANGEBYLEX', K.mail, lo, hi)
saveAll()
return { LOST, int(NOW), REAPED, waiters, grants, expired }
