--[[
leave.lua: a clean shutdown. Removes the caller's waiters, releases its grants, drops its lease, and
tells every other live instance ('c' .. model: capacity changed, pump again).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, items removed or released}.
]]
local n = reapOwners({ [ME] = true })
redis.call('ZREM', K.leases, ME)
finish()
if n > 0 then
  for _, o in ipairs(redis.call('ZRANGEBYSCORE', K.leases, NOW, '+inf')) do
    redis.call(S.pub, S.chan .. o, 'c' .. S.model)
  end
end
return { LOST, NOWS, REAPED, n }
