-- state.lua: the library's constants and the per-call state every helper reads (NOW, S, K, DEPS, ...),
-- set by begin() at the start of every call, and int(). The KEYS/ARGV layout they are read from is in
-- lib.lua's header. Uses no other include.

local WINDOW = 60000
local MAX_COOLDOWN = 300000

-- Per-call state: the library's top level runs once, so every call sets all of it in begin().
-- (Loops over DEPS count 1 .. ND: ipairs costs a C call per step.)
local NOW, NOWS, ME, S, K, ND, DEPS, DEP_BY_ID, A
local LOST, REAPED, NOTIFY, DEPTH
--- In a batch of operations (batch()): finish() is left to the batch's end.
local BATCH
--- The caller's lease was renewed in this call; its mail was claimed, and mail for it added since.
local LEASED, MAIL_CLAIMED, MAIL_ME
--- The rounds hash as this call sees it (roundsGet / roundsSet), and the fields to write back.
local ROUNDS, ROUNDS_SET
--- The number of waiters (waitingCount), nil until read in this call.
local WAITING
--- The arrival sequence and grant step counters as this call counted them (counters.lua), nil until
--- read; DIRTY: finish() writes them back.
local SEQ, GSEQ, COUNTERS_DIRTY
--- The cooldowns ended in this call's grant step (beginStep), nil before it.
local ENDED
--- Whether the grant estimate is also a fair ETA: no deployment bounded by max_parallel_requests alone.
local ETA_KNOWN

--- A number the caller always sends as a numeric string: `s + 0` parses it once, where tonumber parses
--- a string twice (lua_isnumber, then lua_tonumber: two strtod calls, most of a number's cost here).
local function num(s)
  return s + 0
end

--- An optional one: nil for '' (or a missing argument).
local function optnum(s)
  if s == '' or s == nil then return nil end
  return s + 0
end

--- The start of every call: the time, the group's settings and keys from KEYS and ARGV, fresh state.
local function begin(KEYS, ARGV)
  local t = redis.call('TIME')
  NOW = num(t[1]) * 1000 + math.floor(num(t[2]) / 1000)
  local last = ARGV[#ARGV]
  if string.sub(last, 1, 6) == 'clock:' then NOW = tonumber(string.sub(last, 7)) end
  NOWS = string.format('%d', NOW)
  ME = ARGV[1]
  S = {
    lease = num(ARGV[2]),
    chan = ARGV[3],
    pub = 'PUBLISH',
    model = ARGV[4],
    aging = optnum(ARGV[5]),
    maxq = num(ARGV[6]),
    coolms = num(ARGV[7]),
    allowed = num(ARGV[8]),
  }
  -- On a cluster the channel carries the group's hash tag: SPUBLISH stays on the group's shard.
  if string.sub(S.chan, 1, 2) == '\0s' then S.chan, S.pub = string.sub(S.chan, 3), 'SPUBLISH' end
  K = {
    queue = KEYS[1], deadlines = KEYS[2], enqueued = KEYS[3], waiters = KEYS[4], depth = KEYS[5],
    grants = KEYS[6], mail = KEYS[7], leases = KEYS[8], seq = KEYS[9], gseq = KEYS[10],
    rounds = KEYS[11], rate = KEYS[12], seen = KEYS[13],
  }
  ND = num(ARGV[9])
  DEPS, DEP_BY_ID = {}, {}
  ETA_KNOWN = true
  for i = 1, ND do
    local a = 9 + (i - 1) * 4
    local k = 13 + (i - 1) * 4
    local d = {
      id = ARGV[a + 1], rpm = optnum(ARGV[a + 2]), tpm = optnum(ARGV[a + 3]), par = optnum(ARGV[a + 4]),
      key = KEYS[k + 1], krpm = KEYS[k + 2], ktpm = KEYS[k + 3], kfail = KEYS[k + 4], loaded = false,
    }
    DEPS[i] = d
    DEP_BY_ID[d.id] = d
    if not d.rpm and d.par then ETA_KNOWN = false end
  end
  S.bounds = ARGV[10 + ND * 4]
  A = 11 + ND * 4
  LOST, REAPED = 0, 0
  NOTIFY, DEPTH = {}, {}
  ENDED = nil
  BATCH, LEASED, MAIL_CLAIMED, MAIL_ME = false, false, false, false
  ROUNDS, ROUNDS_SET = {}, {}
  WAITING = nil
  SEQ, GSEQ, COUNTERS_DIRTY = nil, nil, false
end

--- Decimal strings of 0 .. 255, each made once (the library's top level cannot call string.format):
--- most counts a reply carries are small, and string.format is a C sprintf per call.
local SMALL_INTS = {}

local function int(n)
  local s = SMALL_INTS[n]
  if s then return s end
  s = string.format('%d', n)
  if n >= 0 and n < 256 then SMALL_INTS[n] = s end
  return s
end
