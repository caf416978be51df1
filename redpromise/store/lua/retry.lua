--[[
retry: hand the promise back for another attempt after a delay: a retry after an error,
  or a suspension (a durable sleep too long to hold a worker for). The current entry is
  acked and deleted; promote dispatches a fresh one when due.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] target stream     {ns:k}:q:<group>
  KEYS[3] delayed zset      {ns:k}:delayed

  ARGV[1] id
  ARGV[2] group
  ARGV[3] version of the caller's execution
  ARGV[4] delay in ms (server clock)
  ARGV[5] last error (msgpack), kept for inspection ('' for a suspension): a retry
          stores it as `last_error`, with `error_at` (now) and `retry_at` (when the
          retry is due), all three only on this path; `attempt` is raised here, so the
          last error is that of the run whose attempt was `attempt` - 1
  ARGV[6] '1' = counts as an attempt (a retry), '0' = a suspension (attempt unchanged)
  ARGV[7] the stream entry the caller's execution holds

  Returns
    { 1, due_at }   scheduled
    { 0, due_at }   the promise's entry is not ARGV[7]: this call (or an earlier send of
                    it) already handed the promise back, so it is a replay and nothing
                    is written; due_at is nil once promote has dispatched again
    { -1 }          no such promise
    { -2, state }   promise no longer pending (its completed state)
    { -3 }          fenced out
    { -5 }          wrong group (or ARGV[2] is '')
  Fence rule: includes/fenced_read.lua for the caller's group and version, then the
  entry ARGV[7], all checked before any write. The version alone does not fence a replay: after the first run,
  promote dispatches a fresh entry under the same version (acquire has not bumped it
  yet), and only the entry tells that fresh dispatch from the caller's. If the caller's
  entry vanished and reconcile re-dispatched, the retry is dropped as well: the fresh
  dispatch runs the promise again, only without counting an attempt.
]]
--- @include now
--- @include fenced_read
local refused, entry = fenced_read(KEYS[1], ARGV[2], ARGV[3], 'entry')
if refused then
  return refused
end
local member = ARGV[2] .. '|' .. ARGV[1]
if entry ~= ARGV[7] then
  return { 0, redis.call('ZSCORE', KEYS[3], member) }
end
redis.call('XACK', KEYS[2], ARGV[2], entry)
redis.call('XDEL', KEYS[2], entry)
local now = now_ms()
local due = now + tonumber(ARGV[4])
-- No entry while waiting in delayed: the field goes (a missing entry reads as '').
redis.call('HDEL', KEYS[1], 'entry')
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'last_error', ARGV[5], 'error_at', now, 'retry_at', due)
  redis.call('HINCRBY', KEYS[1], 'attempt', 1)
end
redis.call('ZADD', KEYS[3], due, member)
return { 1, due }
