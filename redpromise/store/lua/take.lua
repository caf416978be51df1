--[[
take: read one partition's new entries for a consumer and acquire each, in one call.
  XREADGROUP ... COUNT n STREAMS <stream> > (never blocking), then for every entry what
  acquire.lua does (includes/acquire_entry.lua: the same checks, refusals, poison bound
  and fence). A worker uses it while entries are flowing, instead of XREADGROUP and then
  one acquire per entry: one script call and one round trip per partition, not 1 + n.

  KEYS[1] target stream     {ns:k}:q:<group>
  KEYS[2] dead stream       {ns:k}:dead
  KEYS[3] timeouts zset     {ns:k}:timeouts
  KEYS[4] delayed zset      {ns:k}:delayed
  KEYS[5] pending index     {ns:k}:i:pending
  KEYS[6] rejected index    {ns:k}:i:rejected
  KEYS[7] counters hash     {ns:k}:n
  KEYS[8] guard             {ns:k}:absent   never written: see below
  The promise and steps hash of each entry ({ns:k}:p:<id>, {ns:k}:s:<id>) are known only
  once the entry is read, so they are built from ARGV[12] and ARGV[13] and not declared.
  They carry the partition's hash tag, so they are in the declared keys' slot: Redis 6.2
  and 7.0 (cluster too) check each command's keys against the script's slot and allow an
  undeclared key of the same slot, as long as the slot is stable. While it migrates
  (a reshard: MIGRATING on the source, IMPORTING on the target) its keys move one by one,
  and an undeclared key may already be gone: on the source, reading it fails ("non local
  key"); on the target (reached by ASK) it reads as missing, and the entry would be
  dropped as if its promise were gone. So take runs only while the slot is stable: the
  guard key, declared and never present, makes Redis refuse the whole call before it
  runs whenever the slot migrates (the source answers ASK, the target TRYAGAIN, as to
  any call naming a key they lack). Nothing is read then; the worker reads the
  partition with a plain XREADGROUP and acquires each entry with acquire.lua, which
  declares every key it touches, so Redis answers it ASK or TRYAGAIN too, and the entry
  waits in the pending list until the slot has moved (reclaimed after the lease).

  ARGV[1] group
  ARGV[2] consumer name
  ARGV[3] COUNT: at most this many entries are read
  ARGV[4] max deliveries per dispatch (poison bound)
  ARGV[5] poison error (msgpack), stored when the bound is passed
  ARGV[6] retention ms (0 = forever)
  ARGV[7] completion channel
  ARGV[8] acquisition token, unique per take call (see acquire.lua's ARGV[9])
  ARGV[9] dead stream max entries
  ARGV[10] dead stream max age ms
  ARGV[11] 'PUBLISH' or 'SPUBLISH' (see complete.lua)
  ARGV[12] promise key prefix of the partition ({ns:k}:p:)
  ARGV[13] steps key prefix of the partition ({ns:k}:s:)

  Returns one { entry id, promise id, reply } per entry read, in stream order ({} when
  none); reply is what acquire.lua answers for that entry (see its header):
    { 1, version, func, args, attempt, timeout_at, retry, deliveries, steps }  acquired
    { -1 }       promise missing: the entry was acked and deleted
    { -2 }       promise no longer pending: acked and deleted
    { -4 }       entry is not the promise's current dispatch: acked and deleted
    { -5 }       the promise targets another group: acked and deleted
    { -7, func, created_at, completed_at }
                 delivered more than ARGV[4] times: rejected as poison, dead record kept
    { -9, state, t_state, t_version, rs_param, timeout_at, k, v }
                 a Resonate protocol promise (its hash's codec is 'resonate'): its entry
                 is the protocol's message (kind k, version v: see docs/resonate.md), for
                 Resonate workers through redpromise serve, or for a redpromise worker to
                 acquire through the protocol (task.acquire); with the promise's state,
                 its task's state and version, its param (JSON text) and timeout.
                 Nothing written, the entry left in the caller's pending list
    { 0, error } the promise hash could not be read (a key of another type): left in
                 the consumer's pending list, for the caller to bury (bury.lua)
  An entry without a promise id is left in the pending list too, for the caller to bury:
  promise id nil, reply { 0 } alone.
  An error reply of XREADGROUP (NOGROUP, WRONGTYPE, OOM, ...) is the script's reply, with
  nothing read; so is Redis' refusal of the call while the slot migrates (see KEYS[8]).
  Fence rule: as acquire.lua, per entry: every entry taken is a new delivery, so its
  version is bumped (fencing out any previous holder) and it counts toward ARGV[4].
  Replay: never resent (like XREADGROUP ... >, it would deliver other entries). A lost
  reply leaves its entries acquired by this consumer and in its pending list, where they
  are reclaimed after the lease by XAUTOCLAIM, as after a lost XREADGROUP reply; the
  acquisition the lost reply carried is fenced out by the reclaim's version bump. A take
  sent twice reads only entries nobody read before: nothing is acquired twice.
]]
--- @include now
--- @include text
--- @include settle
--- @include dead
--- @include acquire_entry
local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
if type(read) == 'table' and read.err then
  return read
end
local rows = {}
if read then
  if type(read[1]) == 'table' then
    rows = read[1][2]
  elseif read[2] then
    -- fakeredis (the test double) answers { stream, entries } without the outer array.
    rows = read[2]
  end
end
-- acquire_entry()'s keys and argv: acquire.lua's KEYS and ARGV layout (see its header),
-- the partition's keys and this call's settings once, each entry's own slots (promise
-- and steps keys, promise id, entry id) filled in per entry.
local acquire_keys = { '', '', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7] }
local acquire_argv = { '', '', ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], ARGV[7],
  ARGV[8], ARGV[9], ARGV[10], ARGV[11] }
local out = {}
for i = 1, #rows do
  local entry, fields = rows[i][1], rows[i][2] or {}
  local id
  for j = 1, #fields - 1, 2 do
    if fields[j] == 'id' then
      id = fields[j + 1]
      break
    end
  end
  if id then
    acquire_keys[1], acquire_keys[2] = ARGV[12] .. id, ARGV[13] .. id  -- promise, steps
    acquire_argv[1], acquire_argv[2] = id, entry
    out[i] = { entry, id, acquire_entry(acquire_keys, acquire_argv) }
  else
    out[i] = { entry, false, { 0 } }
  end
end
return out
