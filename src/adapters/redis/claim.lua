--[[
claim.lua: the heartbeat. Renews the caller's lease, reaps instances whose lease lapsed (lib.lua), and
takes the caller's mail: grants and expiries other instances decided for its waiters.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, grants (8 strings each), expired ids}.
]]
local grants, expired = {}, {}
claimMail(grants, expired)
saveAll()
return { LOST, int(NOW), REAPED, grants, expired }
