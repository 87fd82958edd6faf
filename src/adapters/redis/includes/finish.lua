-- finish.lua: the end of every script: finish() writes back cached counters, depth and rounds, then
-- sends the notifications. Uses state.lua, counters.lua and mail.lua (notifyAll).

--- Writes back cached deployment counters and depth changes, then sends the notifications.
local function finish()
  if BATCH then return end
  for di = 1, ND do
    local d = DEPS[di]
    if d.loaded then
      if d.inflight ~= d.saved[1] or d.tpmUsed ~= d.saved[2] or d.itpm ~= d.saved[5] then
        redis.call('HSET', d.key, 'inflight', int(d.inflight), 'tpm', int(d.tpmUsed), 'itpm', int(d.itpm))
      end
      if d.cool ~= d.saved[3] then
        if d.cool then redis.call('HSET', d.key, 'cool', int(d.cool)) else redis.call('HDEL', d.key, 'cool') end
      end
      if d.ublock ~= d.saved[4] and d.ublock then redis.call('HSET', d.key, 'ublock', int(d.ublock)) end
    end
  end
  if COUNTERS_DIRTY then
    redis.call('MSET', K.seq, int(SEQ), K.gseq, int(GSEQ))
    COUNTERS_DIRTY = false
  end
  for prio, delta in pairs(DEPTH) do
    if delta ~= 0 and redis.call('HINCRBY', K.depth, prio, delta) <= 0 then redis.call('HDEL', K.depth, prio) end
  end
  if #ROUNDS_SET > 0 then
    local fields, seen = {}, {}
    for _, f in ipairs(ROUNDS_SET) do
      if not seen[f] then
        seen[f] = true
        fields[#fields + 1] = f
        fields[#fields + 1] = ROUNDS[f]
      end
    end
    redis.call('HSET', K.rounds, unpack(fields))
    ROUNDS_SET = {}
  end
  notifyAll()
end
