--[[
remove.lua: takes a waiter out of the queue (cancel or withdraw).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] request id.
Returns {LOST, NOW, REAPED, removed 1 | 0}.
]]
local id = ARGV[A]
local rec = redis.call('HGET', K.waiters, id)
local removed = 0
if rec then
  removeWaiter(id, parseWaiter(rec))
  removed = 1
end
finish()
return { LOST, NOWS, REAPED, removed }
