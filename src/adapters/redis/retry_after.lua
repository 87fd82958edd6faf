--[[
retry_after.lua: seconds a refused caller should wait (when a newcomer could be granted: includes/grant-estimate.lua retryAfterSeconds).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, seconds}.
]]
local seconds = retryAfterSeconds()
finish()
return { LOST, NOWS, REAPED, int(seconds) }
