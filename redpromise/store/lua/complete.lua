--[[
complete: settle a pending promise (resolve, reject, cancel, time out) exactly once.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] steps hash        {ns:k}:s:<id>
  KEYS[3] target stream     {ns:k}:q:<group>
  KEYS[4] timeouts zset     {ns:k}:timeouts
  KEYS[5] delayed zset      {ns:k}:delayed
  KEYS[6] pending index     {ns:k}:i:pending
  KEYS[7] final index       {ns:k}:i:<ARGV[4]>
  KEYS[8] counters hash     {ns:k}:n

  ARGV[1] id
  ARGV[2] group the caller believes the promise targets
  ARGV[3] version ('' = not fenced: an outside resolve/reject/cancel, or a timeout)
  ARGV[4] state: resolved | rejected | rejected_canceled | rejected_timedout
  ARGV[5] value (msgpack)
  ARGV[6] retention ms (0 = forever)
  ARGV[7] completion channel
  ARGV[8] '1' = only when the promise's timeout has passed (the timeout transition):
          then the timeouts member ARGV[2]|ARGV[1] that led here is also tidied on every
          refusal, so no member promote reads as due can stay there forever

  ARGV[9] how to announce the completion: 'PUBLISH' (one server) or 'SPUBLISH' (sharded
          pub/sub on a Redis >= 7 cluster)
  Returns
    { 1, state, created_at, completed_at, func }
                            completed now by this call; the record's Redis timestamps
                            (ms) and function name, for the caller's latency metrics
    { 0, state, value, by } already completed: nothing written, stored outcome returned;
                            `by` is the completing version ('' if from outside), so a
                            replay of this call (a lost reply) is recognised as success.
                            With ARGV[8] = '1': a leftover timeouts member is removed
    { -1 }                  no such promise. With ARGV[8] = '1': the orphaned timeouts
                            member (its hash expired or was deleted) is removed
    { -3 }                  fenced out: ARGV[3] is not the current version
    { -5, group }           wrong group: call again with the stream of the returned group.
                            With ARGV[8] = '1': the member is moved to <group>|id
    { -8 }                  not due: the timeout has not passed yet. With ARGV[8] = '1':
                            the member's score is set to the stored timeout_at
  Fence rule: a non-empty ARGV[3] must equal the stored version, checked before any write.
  The first completion wins; a replay of a completed call answers { 0, … } and writes
  nothing but the tidying above, itself idempotent. An outside completion (ARGV[3] = '')
  replayed answers { 0, state, value, '' } as for any completed promise: outside callers
  get the promise's first outcome either way, which a replay cannot change.
]]
--- @include now
--- @include text
--- @include settle
local h = redis.call('HMGET', KEYS[1], 'state', 'group', 'version', 'entry', 'created_at',
  'func')
local timing_out = ARGV[8] == '1'
-- promote reads a bounded number of due members per partition: one it can neither settle
-- nor remove would hold that slot, and a hundred would stop every timeout behind them.
local member = ARGV[2] .. '|' .. ARGV[1]
if not h[1] then
  if timing_out then
    redis.call('ZREM', KEYS[4], member)
  end
  return { -1 }
end
if h[1] ~= 'pending' then
  if timing_out then
    redis.call('ZREM', KEYS[4], member)
  end
  -- Read here only: a pending record has neither field, and each name an HMGET asks
  -- for costs every call (converted, looked up through the whole hash, answered).
  local done = redis.call('HMGET', KEYS[1], 'value', 'completed_by')
  return { 0, h[1], done[1], done[2] or '' }
end
if h[2] ~= ARGV[2] then
  if timing_out then
    redis.call('ZREM', KEYS[4], member)
    local timeout_at = tonumber(redis.call('HGET', KEYS[1], 'timeout_at'))
    redis.call('ZADD', KEYS[4], timeout_at or now_ms(), h[2] .. '|' .. ARGV[1])
  end
  return { -5, h[2] }
end
-- A promise never acquired has no version field: version 0 (create.lua writes no defaults).
if ARGV[3] ~= '' and (h[3] or '0') ~= ARGV[3] then
  return { -3 }
end
local now = now_ms()
-- timeout_at is read only by the timeout transition: the completions a worker or a caller
-- sends (nearly all of them) skip one HMGET field (see the value read above).
if timing_out then
  -- A pending record without a timeout_at is not redpromise's; its member says it is due.
  local timeout_at = tonumber(redis.call('HGET', KEYS[1], 'timeout_at'))
  if timeout_at and timeout_at > now then
    redis.call('ZADD', KEYS[4], timeout_at, member)
    return { -8 }
  end
end
local done = settle(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[4],
  ARGV[5], ARGV[6], ARGV[7], ARGV[3], h[4] or '', ARGV[9], { KEYS[6], KEYS[7], KEYS[8], h[5] },
  now)
-- The reply is built from what this call read and wrote (settle returns the completed_at
-- text it stored and leaves created_at and func alone): no second read of the hash, and
-- the same bulk strings a read would return.
return { 1, ARGV[4], h[5], done, h[6] }
