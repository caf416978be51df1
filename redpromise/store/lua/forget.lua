--[[
forget: drop one search-index entry that no longer describes a promise: its completed
  record expired after its retention (PEXPIRE removes the hash and nothing else), or the
  id was used again and the entry belongs to the earlier promise. The counter of the
  entry's state and group goes down with it.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] state index       {ns:k}:i:<ARGV[2]>
  KEYS[3] counters hash     {ns:k}:n
  KEYS[4] expiries zset     {ns:k}:e  (settle.lua: <state>|<group>|<id> by expiry time)

  ARGV[1] index member      <group>|<id>
  ARGV[2] the index's state

  Returns
    { 1 }        removed, and its counter decremented; its expiries member too
    { 0 }        kept: the member is not in the index (its expiries member is removed),
                 or the promise is there, in this state, with the created_at the member
                 is scored by (its expiries member is scored again by the record's TTL,
                 so the sweep comes back when it ends)
  Fence rule: none; the check of the hash and the removal are one atomic step, so an
  entry that still describes its promise is never removed.
  Replay: the first run removed the member, so a resend answers { 0 } and decrements
  nothing.
]]
--- @include now
--- @include text
local expiry = ARGV[2] .. '|' .. ARGV[1]
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then
  redis.call('ZREM', KEYS[4], expiry)
  return { 0 }
end
local h = redis.call('HMGET', KEYS[1], 'state', 'created_at')
if h[1] == ARGV[2] and tonumber(h[2]) == tonumber(score) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('ZADD', KEYS[4], 'XX', int_text(now_ms() + ttl), expiry)
  else  -- kept forever: nothing will expire
    redis.call('ZREM', KEYS[4], expiry)
  end
  return { 0 }
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], expiry)
local group = string.match(ARGV[1], '^([^|]*)|') or ''
redis.call('HINCRBY', KEYS[3], ARGV[2] .. '|' .. group, -1)
return { 1 }
