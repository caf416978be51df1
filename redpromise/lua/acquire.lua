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
  Fence rule: this is where the fence advances, once per acquire call: every delivery
  (XREADGROUP, or XAUTOCLAIM by any consumer after the lease lapsed) is a new call with a
  new token, so it counts toward ARGV[5] and bumps the version, fencing out the previous
  holder; a resend of the same call (the client's retry after a lost reply) does neither.
  Replay: the refusals ack and delete the entry, which a replay does again (harmless); a
  replayed poison rejection answers { -2 } and writes no second dead record.
]]
--- @include now
--- @include text
--- @include settle
--- @include dead
local function drop_entry()
  redis.call('XACK', KEYS[3], ARGV[3], ARGV[2])
  redis.call('XDEL', KEYS[3], ARGV[2])
end
local h = redis.call('HMGET', KEYS[1], 'state', 'group', 'entry', 'deliveries', 'version',
  'func', 'args', 'attempt', 'timeout_at', 'retry', 'token')
if not h[1] then
  drop_entry()
  return { -1 }
end
if h[1] ~= 'pending' then
  drop_entry()
  return { -2 }
end
if h[2] ~= ARGV[3] then
  drop_entry()
  return { -5 }
end
if h[3] ~= ARGV[2] then
  drop_entry()
  return { -4 }
end
-- Only an acquired execution can checkpoint, so before the first acquire there is none.
local function steps_of(version)
  if version > 1 then
    return redis.call('HGETALL', KEYS[2])
  end
  return {}
end
if ARGV[9] ~= '' and h[11] == ARGV[9] then
  local version = tonumber(h[5])
  return { 1, version, h[6], h[7], h[8], h[9], h[10], tonumber(h[4]), steps_of(version) }
end
local deliveries = (tonumber(h[4]) or 0) + 1
if deliveries > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'deliveries', deliveries)
  -- The record keeps the function and arguments (settle drops them from the hash), so
  -- an operator can requeue the work as a new promise (redpromise/_inspect.py).
  to_dead(KEYS[4], ARGV[10], tonumber(ARGV[11]), { 'id', ARGV[1], 'group', ARGV[3],
    'entry', ARGV[2], 'deliveries', deliveries, 'func', h[6] or '', 'args', h[7] or '' })
  -- Read on this rare path only: one field fewer in the HMGET every acquire runs.
  local created_at = redis.call('HGET', KEYS[1], 'created_at')
  local done = settle(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], ARGV[1], ARGV[3], 'rejected',
    ARGV[6], ARGV[7], ARGV[8], '', ARGV[2], ARGV[12], { KEYS[7], KEYS[8], KEYS[9], created_at },
    now_ms())
  -- As complete.lua: created_at as read, completed_at as settle stored it.
  return { -7, h[6], created_at, done }
end
local version = (tonumber(h[5]) or 0) + 1
redis.call('HSET', KEYS[1], 'version', version, 'deliveries', deliveries, 'owner', ARGV[4],
  'token', ARGV[9])
return { 1, version, h[6], h[7], h[8], h[9], h[10], deliveries, steps_of(version) }
