--[[
lib.lua: the root of the library of every Triage script: the key and argument layout below, then the
shared helpers, one topic per file in includes/ (the `--- @include` lines at the end, each included once,
in that order). redis-store.ts loads one Redis Function library (FUNCTION LOAD; redis-library.ts): this
file with its includes, then each script file (enqueue.lua, release.lua, ...) registered as one function
whose body runs after begin() (includes/state.lua). The library's top level runs once, when it is
loaded; each FCALL runs only begin() and the script's own body, still ONE atomic call.

KEYS (the same layout for every script; all keys of a model group share the hash tag {model}):
  KEYS[1]  queue      ZSET   score = rank (priority, or priority * agingMs + enqueuedAt with aging)
                             member = round (15 digits) .. seq (15 digits) .. request id
                             => ZSET order (score, then bytes of member) = compareOrder (rank, round, seq)
  KEYS[2]  deadlines  ZSET   score = queue-wait deadline (server ms), member = request id
  KEYS[3]  enqueued   ZSET   score = enqueuedAt (server ms), member = request id (oldest wait)
  KEYS[4]  waiters    HASH   request id -> owner \t priority \t enqueuedAt \t deadline \t tokens \t seq \t round \t tenant
  KEYS[5]  depth      HASH   priority -> waiting count
  KEYS[6]  grants     HASH   grant id -> owner \t deployment \t tokens \t grantedAt \t waitedMs \t priority \t seq \t request id
  KEYS[7]  mail       ZSET   score 0, lexicographic: results for an owner not delivered to it yet:
                             owner \0 g \0 grant id     owner \0 x \0 request id (expired)
  KEYS[8]  leases     ZSET   score = lease expiry (server ms), member = instance id
  KEYS[9]  seq        STRING arrival sequence counter
  KEYS[10] gseq       STRING grant step counter, + 1 per step that grants (grant ids are request id / server ms . counter)
  KEYS[11] rounds     HASH   fair rounds: s \0 priority -> highest round granted,
                             t \0 priority \0 tenant -> last round given to that tenant
  KEYS[12] rate       HASH   unix second -> grants in that second (last minute; Retry-After)
  KEYS[13] seen       STRING server ms of the last call that reaped (reapDead): a longer silence is not
                             counted against the leases
  then for deployment i = 0 .. n-1 in config order:
  KEYS[14+4i] dep     HASH   inflight, tpm (tokens in the window), itpm (tpm reserved by the calls in
                             flight: the grant estimate's certain bound counts it as possibly unused),
                             cool (cooldown end, server ms),
                             ublock (end of a block from the provider's rate-limit headers, server ms),
                             why (the failure that started the cooldown), err (the last upstream error)
  KEYS[15+4i] rpm     ZSET   score = grant time (server ms), member = grant id
  KEYS[16+4i] tpm     ZSET   score = grant time (server ms), member = grant id \t tokens
  KEYS[17+4i] fail    ZSET   score = failure time (server ms), member = grant id

ARGV (the same prefix for every script):
  ARGV[1] caller instance id        ARGV[2] lease ms           ARGV[3] channel prefix (owner id appended;
                                                                 NUL 's' before it: SPUBLISH, Redis Cluster)
  ARGV[4] model group name          ARGV[5] aging ms or ''     ARGV[6] max queue size
  ARGV[7] cooldown ms               ARGV[8] allowed fails      ARGV[9] n = number of deployments
  then per deployment: id, rpm, tpm, max_parallel_requests ('' = unlimited)
  ARGV[10 + 4n] per-priority queue bounds 'minPriority:maxWaiting,…' (config-queue-bounds.ts), or ''
  The script's own arguments start at ARGV[A], A = 11 + 4n.

Time is the Redis server's clock (TIME), in ms, for windows, deadlines, cooldowns and leases. Tests only:
a store built with a script clock (RedisStoreOptions.scriptClock) ends every call's ARGV with
'clock:<ms>', and that is NOW instead, so a test can move time for Redis and MemoryStore alike.
Replies start with {LOST, NOW, REAPED} (enqueue, release and pump reply with one string whose first three
tab-separated fields they are: includes/grant-step.lua flat): LOST = 1 when the caller's lease was missing (it was reaped, or
Redis lost its data), REAPED = waiters and grants of dead instances removed / released by this call.
Numbers go back to the client as strings (a Lua number would be truncated to an integer reply).
]]

-- The helpers, in this order: a Lua local is visible only to code defined after it (redis-library.ts
-- resolves each include once).
--- @include "state"
--- @include "rounds"
--- @include "counters"
--- @include "deployments"
--- @include "waiters-grants"
--- @include "leases"
--- @include "mail"
--- @include "finish"
--- @include "grant-step"
--- @include "retry-after"
--- @include "grant-estimate"
--- @include "displacement"
--- @include "batch"
