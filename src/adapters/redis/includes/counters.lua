-- counters.lua: the arrival sequence (KEYS[9]) and the grant step counter (KEYS[10]) as one call sees
-- them: both read at most once per call (one MGET), counted on here, and written back once by finish()
-- (one MSET). A batch of 64 operations thus makes one read and one write instead of an INCR per arrival
-- and per grant step (docs/multi-instance.md, throughput). Uses state.lua (K, SEQ, GSEQ).

local function readCounters()
  if SEQ ~= nil then return end
  local v = redis.call('MGET', K.seq, K.gseq)
  SEQ, GSEQ = tonumber(v[1] or '0'), tonumber(v[2] or '0')
end

--- The next arrival sequence number (as INCR of KEYS[9]).
local function nextSeq()
  readCounters()
  SEQ = SEQ + 1
  COUNTERS_DIRTY = true
  return SEQ
end

--- The grant step counter now: every grant of a later step carries a larger one.
local function grantCounter()
  readCounters()
  return GSEQ
end

--- The counter of a new grant step (as INCR of KEYS[10]).
local function nextGrantCounter()
  GSEQ = grantCounter() + 1
  COUNTERS_DIRTY = true
  return GSEQ
end
