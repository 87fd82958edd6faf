--[[
pump.lua: the grant step (includes/grant-step.lua pumpGroup): ends lapsed cooldowns, expires overdue waiters, then
grants waiters strictly in global queue order while a deployment has headroom (up to a batch cap),
choosing the least-loaded deployment and recording every limit (in flight, rpm, tpm). Grants and
expiries of waiters owned by other instances go to their mailbox and each such owner is told on its
channel; the caller's own mail is claimed too. Also renews the caller's lease and reaps instances whose
lease lapsed.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] batch cap (grants per call).
Returns ONE string (includes/grant-step.lua flat): LOST, NOW, REAPED, waiting, next wake (server ms) or '',
more 1 | 0, tab-separated; then NUL and the grants (8 fields each, see pushGrant), NUL and the expiries
(4 fields each, see endingFields), NUL and the deployments whose cooldown ended.
]]
local cap = tonumber(ARGV[A])
touchLease()
local p = pumpGroup(cap)
finish()
-- (includes/grant-step.lua flat()'s layout, built at once.)
return int(LOST) .. '\t' .. NOWS .. '\t' .. int(REAPED) .. '\t' .. pumpFields(p) .. pumpLists(p)
