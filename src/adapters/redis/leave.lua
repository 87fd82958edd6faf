--[[
leave.lua: a clean shutdown. Removes the caller's waiters, releases its grants, drops its lease, and
tells every other live instance ('c' .. model: capacity changed, pump again).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {NOW, items removed or released}.
]]
local n = reapOwner(ME)
redis.call('ZREM', K.leases, ME)
saveAll()
if n > 0 then
  for _, o in ipairs(redis.call('ZRANGEBYSCORE', K.leases, NOW, '+inf')) do
    redis.call('PUBLISH', S.chan .. o, 'c' .. S.model)
  end
end
return { int(NOW), n }
