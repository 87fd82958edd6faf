--[[
position.lua: a waiter's 0-based place in the group's global queue.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] request id.
Returns {LOST, NOW, REAPED, position or -1}.
]]
local rec = redis.call('HGET', K.waiters, ARGV[A])
local pos = -1
if rec then
  local w = parseWaiter(rec)
  pos = redis.call('ZRANK', K.queue, member(w.round, w.seq, ARGV[A])) or -1
end
finish()
return { LOST, NOWS, REAPED, pos }
