--[[
pump.lua: the grant step (includes/grant-step.lua pumpGroup): ends lapsed cooldowns, expires overdue waiters, then
grants waiters strictly in global queue order while a deployment has headroom (up to a batch cap),
choosing the least-loaded deployment and recording every limit (in flight, rpm, tpm). Grants and
expiries of waiters owned by other instances go to their mailbox and each such owner is told on its
channel; the caller's own mail is claimed too. Also renews the caller's lease and reaps instances whose
lease lapsed.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then ARGV[A] batch cap (grants per call).
Returns {LOST, NOW, REAPED, waiting, next wake (server ms) or '', more 1 | 0,
         grants (8 strings each, see pushGrant), expired ids, deployments whose cooldown ended}
(each of the three lists '' when empty: includes/grant-step.lua withPump).
]]
local cap = tonumber(ARGV[A])
touchLease()
local p = pumpGroup(cap)
finish()
return withPump({ LOST, NOWS, REAPED }, p)
