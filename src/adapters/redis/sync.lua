--[[
sync.lua: everything the caller owns, for reconciliation after an error or a lost lease: its waiters,
its grants (delivered or not) and its undelivered expiries and displacements. The caller's mail is emptied: the caller
delivers from this answer what it had not delivered yet. Renews the lease and reaps dead instances.
Scans the group's waiters and grants (it runs after failures only).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, waiter ids, grants (8 strings each), expired ids}.
]]
local waiters, grants, expired = {}, {}, {}
touchLease()
reapDead()
local all = redis.call('HGETALL', K.waiters)
for i = 1, #all, 2 do
  if ownerOf(all[i + 1]) == ME then waiters[#waiters + 1] = all[i] end
end
all = redis.call('HGETALL', K.grants)
for i = 1, #all, 2 do
  if ownerOf(all[i + 1]) == ME then pushGrant(grants, all[i], parseGrant(all[i + 1])) end
end
local lo, hi = ownerRange(ME)
local n = #ME
for _, m in ipairs(redis.call('ZRANGEBYLEX', K.mail, lo, hi)) do
  local kind = string.sub(m, n + 2, n + 2)
  if kind == 'x' then expired[#expired + 1] = string.sub(m, n + 4) end
  -- Displaced waiters, marked as claimMail marks them.
  if kind == 'd' then expired[#expired + 1] = '\0' .. string.sub(m, n + 4) end
end
redis.call('ZREMRANGEBYLEX', K.mail, lo, hi)
finish()
return { LOST, NOWS, REAPED, waiters, grants, expired }
