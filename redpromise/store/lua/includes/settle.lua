-- settle(): the one way a pending promise becomes completed. Callers have already checked
-- that the promise is pending and that they may complete it (fence, group, due time).
--   pkey, skey, stream, timeouts, delayed: keys of the promise's partition
--   id, group: the promise id and its target group ('' for a latent promise)
--   state, value: the final state and the msgpack-encoded outcome
--   retention_ms: TTL of the completed record, as the caller's ARGV text (0 = keep forever)
--   channel: completion channel (the message: the outcome when the value is at most 1024
--       bytes, else the id; below)
--   publish: 'PUBLISH', or 'SPUBLISH' for the shard channel of a Redis >= 7 cluster
--   by: the version of the execution that completes it ('' from outside), so a replayed
--       completion can tell "already done by me" from "done by someone else"
--   entry: the promise's current stream entry as the caller read it ('' = none: then, and
--       only then, the promise may be waiting in the delayed set)
--   index: { pending index, index of `state`, counters hash, created_at }: the promise's
--       search entry moves from the pending index to its final state's, and the counters
--       follow (a counter moves only when its entry does, so a replay counts nothing)
--   now: the caller's now_ms(), stored as completed_at (one TIME per script call)
-- With a retention, two keys of the promise's hash tag (so of its slot), built from pkey
-- rather than passed by every caller, follow the record: its children set (canceling
-- the promise reaches its children for as long as the record exists, and no longer) and
-- the partition's expiries zset ({ns:k}:e, '<state>|<group>|<id>' scored by the time the
-- record expires), from which every worker's upkeep drops the count of the state at
-- that record's own expiry (redpromise/store/search.py, IndexSweep).
-- Returns completed_at as the text stored. Needs text.lua.
local function settle(pkey, skey, stream, timeouts, delayed, id, group, state, value,
                      retention_ms, channel, by, entry, publish, index, now)
  if entry ~= '' then
    if group ~= '' then
      redis.call('XACK', stream, group, entry)
      redis.call('XDEL', stream, entry)
    end
  elseif group ~= '' then
    redis.call('ZREM', delayed, group .. '|' .. id)
  end
  local now_text = int_text(now)
  if by ~= '' then
    redis.call('HSET', pkey, 'state', state, 'value', value, 'completed_at', now_text,
      'completed_by', by)
  else
    redis.call('HSET', pkey, 'state', state, 'value', value, 'completed_at', now_text)
  end
  redis.call('HDEL', pkey, 'args', 'entry', 'owner', 'deliveries', 'retry', 'token')
  local member = group .. '|' .. id
  redis.call('ZREM', timeouts, member)
  redis.call('DEL', skey)
  if redis.call('ZREM', index[1], member) == 1 then
    redis.call('HINCRBY', index[3], 'pending|' .. group, '-1')
  end
  local score = index[4]
  if not tonumber(score) then
    score = now_text
  end
  if redis.call('ZADD', index[2], score, member) == 1 then
    redis.call('HINCRBY', index[3], state .. '|' .. group, '1')
  end
  local keep = tonumber(retention_ms)
  if keep > 0 then
    redis.call('PEXPIRE', pkey, retention_ms)
    local tag = string.sub(pkey, 1, #pkey - #id - 3)  -- pkey is <tag>:p:<id>
    redis.call('PEXPIRE', tag .. ':k:' .. id, retention_ms)
    redis.call('ZADD', tag .. ':e', int_text(now + keep), state .. '|' .. member)
  end
  -- pcall: the promise is already stored and Redis never rolls back a script's writes, so
  -- a refused PUBLISH (an ACL user without channel rights) must not turn a stored
  -- completion into an error reply. Waiters then learn of it by their safety poll.
  -- A small outcome travels in the message, so waiters need no read (redpromise/client/waiter.py):
  -- NUL state NUL created_at NUL retention_ms NUL id NUL value. An id holds no control
  -- character, so a message starting with NUL is never a bare id. A larger value (every
  -- subscribed process receives every message) is announced by the id alone, and its
  -- waiters read the record.
  if #value <= 1024 then
    redis.pcall(publish, channel, '\0' .. state .. '\0' .. (index[4] or '') .. '\0'
      .. retention_ms .. '\0' .. id .. '\0' .. value)
  else
    redis.pcall(publish, channel, id)
  end
  return now_text
end
