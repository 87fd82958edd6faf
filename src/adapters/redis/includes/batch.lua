-- batch.lua: OPS (each script's body by name) and batch(): several operations in one call. Uses
-- state.lua and finish.lua (finish).

--- Each script's body by name: redis-library.ts defines them below, and registers one function per
--- script that runs begin() and its body.
local OPS = {}

--- Several operations of one instance on one group in one call (redis-store.ts sends those one turn of
--- its event loop issues as one): after the common prefix, for each operation its name, its number of
--- arguments, then them. Each runs as its own script would, in order, and sees what the ones before it
--- did; the writes each leaves to finish() are made once, at the end. Returns one reply per operation
--- (an error reply in its place, e.g. an enqueue of an id already waiting).
local function batch(KEYS, ARGV)
  local last = #ARGV
  if string.sub(ARGV[last], 1, 6) == 'clock:' then last = last - 1 end
  local replies = {}
  local i = A
  BATCH = true
  while i <= last do
    local op, n = OPS[ARGV[i]], num(ARGV[i + 1])
    A = i + 2
    LOST, REAPED = 0, 0
    for di = 1, ND do DEPS[di].ready = nil end
    replies[#replies + 1] = op(KEYS, ARGV)
    i = i + 2 + n
  end
  BATCH = false
  finish()
  return replies
end

-- (the scripts follow: redis-library.ts)
