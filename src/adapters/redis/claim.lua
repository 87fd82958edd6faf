--[[
claim.lua: the heartbeat. Renews the caller's lease, reaps instances whose lease lapsed, and takes the
caller's mail: grants and expiries other instances decided for its waiters.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua (no own arguments).
Returns {LOST, NOW, REAPED, grants (8 strings each), expired ids, the earliest other lease's end
(server ms) or ''}.
]]
local grants, expired = {}, {}
touchLease()
reapDead()
claimMail(grants, expired)
finish()
return { LOST, NOWS, REAPED, grants, expired, nextLeaseEnd() }
