-- retry-after.lua: the grants of the last minute (KEYS[12]) Retry-After reads. Uses state.lua (K, NOW).

local function grantsLastMinute()
  local sec = math.floor(NOW / 1000)
  local all = redis.call('HGETALL', K.rate)
  local sum = 0
  for i = 1, #all, 2 do
    if tonumber(all[i]) > sec - 60 then sum = sum + tonumber(all[i + 1]) else redis.call('HDEL', K.rate, all[i]) end
  end
  return sum
end
