-- rounds.lua: the fair rounds hash (KEYS[11]) as one call sees it: roundsGet, roundsSet (written back
-- by finish()). Uses state.lua (K, ROUNDS, ROUNDS_SET).

--- Fields of the rounds hash (strings, nil when absent), each read at most once per call: the arrivals
--- of one tenant and priority in a batch share them.
local function roundsGet(f1, f2)
  -- (Read already: most arrivals of a batch share their tenant and priority.)
  local a, b = ROUNDS[f1], false
  if f2 ~= nil then b = ROUNDS[f2] end
  if a ~= nil and b ~= nil then return a or nil, b or nil end
  local need = {}
  if ROUNDS[f1] == nil then need[#need + 1] = f1 end
  if f2 ~= nil and ROUNDS[f2] == nil then need[#need + 1] = f2 end
  if #need > 0 then
    local v = redis.call('HMGET', K.rounds, unpack(need))
    for i, f in ipairs(need) do ROUNDS[f] = v[i] or false end
  end
  a, b = ROUNDS[f1], false
  if f2 ~= nil then b = ROUNDS[f2] end
  return a or nil, b or nil
end

--- Sets fields of the rounds hash (field, value, ...); finish() writes them once.
local function roundsSet(fields)
  for i = 1, #fields, 2 do
    ROUNDS[fields[i]] = fields[i + 1]
    ROUNDS_SET[#ROUNDS_SET + 1] = fields[i]
  end
end
