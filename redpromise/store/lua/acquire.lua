--[[
acquire: take ownership of one delivered stream entry (by XREADGROUP or XAUTOCLAIM).
  Bumps the promise's version (the fencing token) and returns what the worker needs.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] steps hash        {ns:k}:s:<id>
  KEYS[3] target stream     {ns:k}:q:<group>
  KEYS[4] dead stream       {ns:k}:dead
  KEYS[5] timeouts zset     {ns:k}:timeouts
  KEYS[6] delayed zset      {ns:k}:delayed
  KEYS[7] pending index     {ns:k}:i:pending
  KEYS[8] rejected index    {ns:k}:i:rejected
  KEYS[9] counters hash     {ns:k}:n

  ARGV[1] id
  ARGV[2] stream entry id
  ARGV[3] group
  ARGV[4] consumer name
  ARGV[5] max deliveries per dispatch (poison bound)
  ARGV[6] poison error (msgpack), stored when the bound is passed
  ARGV[7] retention ms (0 = forever)
  ARGV[8] completion channel
  ARGV[9] acquisition token: unique per acquire call (not per send), so a resent call is
          recognised ('' = no replay detection)
  ARGV[10] dead stream max entries
  ARGV[11] dead stream max age ms
  ARGV[12] how to announce a poison rejection: 'PUBLISH' or 'SPUBLISH' (see complete.lua)

  Returns
    { 1, version, func, args, attempt, timeout_at, retry, deliveries, steps }
                 acquired; steps is the flat HGETALL of the checkpoints. A replay of the
                 call that acquired (same token, same entry, nobody acquired since)
                 returns the same acquisition and counts nothing again
    { -1 }       promise missing (expired or never written): entry acked and deleted
    { -2 }       promise no longer pending: entry acked and deleted
    { -4 }       entry is not the promise's current dispatch: acked and deleted
    { -5 }       the promise targets another group: entry acked and deleted
    { -7, func, created_at, completed_at }
                 delivered more than ARGV[5] times: promise rejected as poison, entry
                 moved to the dead stream (with the function and arguments); the
                 record's function and Redis timestamps are returned for metrics
    { -9, state, t_state, t_version, rs_param, timeout_at, k, v }
                 a Resonate protocol promise (its hash's codec is 'resonate'): its entry
                 is the protocol's message (kind k, version v: see docs/resonate.md), for
                 Resonate workers through redpromise serve, or for a redpromise worker to
                 acquire through the protocol (task.acquire); with the promise's state,
                 its task's state and version, its param (JSON text) and timeout.
                 Nothing written, the entry left in the caller's pending list
      { -6 }       another consumer holds the entry (it reclaimed it after the caller's
                 delivery had lapsed): nothing written, the entry left to its holder
    { 0, error } the promise hash could not be read (a key of another type: the text
                 is Redis' WRONGTYPE error); nothing written, the entry left pending.
                 The only reply that blames the entry: the worker buries it (bury.lua)
  An error reply of the call (TRYAGAIN or ASK while the slot migrates, OOM, ...) says
  nothing about the entry: the worker leaves it pending, to be acquired again.
  Fence rule: this is where the fence advances, once per acquire call: every delivery
  (XREADGROUP, or XAUTOCLAIM by any consumer after the lease lapsed) is a new call with a
  new token, so it counts toward ARGV[5] and bumps the version, fencing out the previous
  holder; a resend of the same call (the client's retry after a lost reply) does neither.
  The lease: an acquisition restarts the entry's idle time (XCLAIM ... JUSTID to the
  caller), so the lease Redis enforces (XAUTOCLAIM's min-idle) starts when acquire runs,
  never before the moment the worker counts its own lease from (when it sent acquire).
  Counted from the delivery instead, a worker whose acquire went out late (a busy or
  frozen event loop between XREADGROUP and acquire) lost the entry to a reclaim while
  its local deadline still let it start steps. take.lua needs no such reset: its
  XREADGROUP delivers in the same script.
  Replay: the refusals ack and delete the entry, which a replay does again (harmless); a
  replayed poison rejection answers { -2 } and writes no second dead record.
  The logic is includes/acquire_entry.lua, which take.lua runs for each entry it reads.
]]
--- @include now
--- @include text
--- @include settle
--- @include dead
--- @include acquire_entry
-- Ownership first: XCLAIM checks no owner, so resetting the idle time of an entry another
-- consumer reclaimed would steal it back (and acquiring would fence out its execution).
local p = redis.call('XPENDING', KEYS[3], ARGV[3], ARGV[2], ARGV[2], 1)
if #p > 0 and p[1][2] ~= ARGV[4] then
  return { -6 }
end
local reply = acquire_entry(KEYS, ARGV)
if reply[1] == 1 and #p > 0 then
  redis.call('XCLAIM', KEYS[3], ARGV[3], ARGV[4], 0, ARGV[2], 'JUSTID')
end
return reply
