-- counters.lua: the arrival sequence (KEYS[9]) and the grant step counter (KEYS[10]) as one call sees
-- them: each read at most once per call, counted on here, and written back once by finish(). A batch of
-- 64 operations thus makes two reads and two writes instead of an INCR per arrival and per grant step
-- (docs/multi-instance.md, throughput). Uses state.lua (K, SEQ, GSEQ).

--- The next arrival sequence number (as INCR of KEYS[9]).
local function nextSeq()
  if SEQ == nil then SEQ = tonumber(redis.call('GET', K.seq) or '0') end
  SEQ = SEQ + 1
  SEQ_DIRTY = true
  return SEQ
end

--- The grant step counter now: every grant of a later step carries a larger one.
local function grantCounter()
  if GSEQ == nil then GSEQ = tonumber(redis.call('GET', K.gseq) or '0') end
  return GSEQ
end

--- The counter of a new grant step (as INCR of KEYS[10]).
local function nextGrantCounter()
  GSEQ = grantCounter() + 1
  GSEQ_DIRTY = true
  return GSEQ
end
