--[[
key_rate.lua: counts one request against a virtual key's rpm, once for every instance on the prefix.
Standalone (not built on lib.lua): it touches no model group.
KEYS[1] the key's window: a sorted set of request stamps, scored by the Redis clock (TIME) in ms.
ARGV[1] limit (requests per window), ARGV[2] window ms, ARGV[3] a member unique to this request.
Returns {1, 0} when the request is counted, or {0, ms} when the window is full: ms until its oldest
stamp leaves it. A refused request is not counted.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
-- A stamp exactly one window old has left it (as in src/machines/rate-window.ts).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return { 0, math.max(1, tonumber(oldest[2]) + window - now) }
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return { 1, 0 }
