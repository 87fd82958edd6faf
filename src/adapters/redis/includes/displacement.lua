-- displacement.lua: a better arrival taking the place of the worst waiter in a full queue. Uses state.lua
-- (K), waiters-grants.lua, mail.lua (mailDisplaced) and grant-estimate.lua (retryAfterSeconds).

--- Priority decides who is shed: when an arrival of queue rank `rank` finds the queue full, the waiter
--- served last (the ZSET's tail: worst rank, then the latest round and arrival) leaves for it if the
--- arrival's rank is strictly better. The displaced waiter is answered through its owner's mail.
--- Returns the waiter to displace ({id, w}), or nil when the arrival is no better than the worst.
local function worstBelow(rank)
  local worst = redis.call('ZRANGE', K.queue, -1, -1, 'WITHSCORES')
  if worst[1] == nil or not (rank < tonumber(worst[2])) then return nil end
  local id = string.sub(worst[1], 31)
  local rec = redis.call('HGET', K.waiters, id)
  if not rec then return nil end
  return { id = id, w = parseWaiter(rec) }
end

--- Takes `victim` (from worstBelow) out of the queue and tells its owner.
local function displace(victim)
  removeWaiter(victim.id, victim.w)
  mailDisplaced(victim.w.owner, victim.id, retryAfterSeconds(victim.w.tokens))
end
