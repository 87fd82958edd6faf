--[[
release.lua: ends a grant exactly once: frees its slot, reconciles its tpm reservation with the real
usage, applies the cooldown policy to a failure. A grant already released is a no-op.
KEYS: the group layout of lib.lua.
ARGV: the common prefix of lib.lua, then
  ARGV[A]   grant id     ARGV[A+1] outcome: ok | cancelled | failed     ARGV[A+2] tokens used or ''
  ARGV[A+3] failure kind or ''     ARGV[A+4] retry-after ms or ''
Returns {LOST, NOW, REAPED, released 1 | 0, cooldown until (server ms) or '', cooldown reason or ''}.
]]
local gid = ARGV[A]
local rec = redis.call('HGET', K.grants, gid)
if not rec then return { LOST, int(NOW), REAPED, 0, '', '' } end
local untilAt, reason = releaseGrant(gid, rec, ARGV[A + 1], tonumber(ARGV[A + 2]), ARGV[A + 3], tonumber(ARGV[A + 4]))
finish()
if untilAt then return { LOST, int(NOW), REAPED, 1, int(untilAt), reason } end
return { LOST, int(NOW), REAPED, 1, '', '' }
