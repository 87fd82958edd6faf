--[[
release.lua: ends a grant exactly once: frees its slot, reconciles its tpm reservation with the real
usage, applies the cooldown policy to a failure. A grant already released is a no-op. With a batch cap,
the grant step (includes/grant-step.lua pumpGroup, as pump.lua) follows in the same script, released or not, and the
caller's lease is renewed; without one nothing else is granted (a retrying request is not back in line
yet).
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then
  ARGV[A]   grant id     ARGV[A+1] outcome: ok | cancelled | failed     ARGV[A+2] tokens used or ''
  ARGV[A+3] failure kind or ''     ARGV[A+4] retry-after ms or ''
  ARGV[A+5] batch cap of the grant step, or '' for no grant step
  ARGV[A+6] upstream block ms (the provider's rate-limit headers said a limit is used up) or ''
  ARGV[A+7] upstream block reason (the limit) or ''
  ARGV[A+8] the upstream's error message for a failure, or '' (no tab or NUL)
  ARGV[A+9] the grant's deployment id     ARGV[A+10] the grant's reserved tokens (both as its grant
            record holds them and its grant reply said: the release reads no record, HDEL says
            whether the grant was still there)
Returns ONE string (includes/grant-step.lua flat: these fields tab-separated, then the grant step's lists):
LOST, NOW, REAPED, released 1 | 0, cooldown until (server ms) or '', cooldown reason or '', pumped 1 | 0,
then the 3 fields of pump.lua's reply after its head ('' each when not pumped), then upstream-blocked
until (server ms) or '', its reason or ''.
]]
local gid, dep = ARGV[A], ARGV[A + 9]
local cap = optnum(ARGV[A + 5])
local released = redis.call('HDEL', K.grants, gid)
local untilAt, reason = nil, nil
if released == 1 then
  untilAt, reason = releaseGrant(gid, dep, ARGV[A + 10], ARGV[A + 1], optnum(ARGV[A + 2]), ARGV[A + 3], optnum(ARGV[A + 4]), ARGV[A + 8])
  -- A cooldown began: if every deployment now fails, every waiter is answered 503; else those whose
  -- deadline now certainly passes first, 429 (their owners' mail; the grant step below claims the
  -- caller's own).
  if untilAt and not shedUnavailable() then shedUnreachable() end
end
-- Before the grant step, so nothing is granted on a deployment the provider just said is used up.
local blockedUntil = nil
local blockMs = optnum(ARGV[A + 6])
if released == 1 and blockMs and ARGV[A + 1] ~= 'cancelled' then blockedUntil = blockUpstream(dep, blockMs) end
local p = nil
if cap then
  touchLease()
  p = pumpGroup(cap)
end
finish()
local cool, why, blocked, blockWhy = '', '', '', ''
if untilAt then cool, why = int(untilAt), reason end
if blockedUntil then blocked, blockWhy = int(blockedUntil), ARGV[A + 7] end
-- (includes/grant-step.lua flat()'s layout, built at once.)
return int(LOST) .. '\t' .. NOWS .. '\t' .. int(REAPED) .. '\t' .. int(released) .. '\t' .. cool .. '\t' .. why .. '\t'
  .. (p and '1' or '0') .. '\t' .. pumpFields(p) .. '\t' .. blocked .. '\t' .. blockWhy .. pumpLists(p)
