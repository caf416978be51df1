--[[
forget: drop one search-index entry that no longer describes a promise: its completed
  record expired after its retention (PEXPIRE removes the hash and nothing else), or the
  id was used again and the entry belongs to the earlier promise. The counter of the
  entry's state and group goes down with it.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] state index       {ns:k}:i:<ARGV[2]>
  KEYS[3] counters hash     {ns:k}:n

  ARGV[1] index member      <group>|<id>
  ARGV[2] the index's state

  Returns
    { 1 }        removed, and its counter decremented
    { 0 }        kept: the member is not in the index, or the promise is there, in this
                 state, with the created_at the member is scored by
  Fence rule: none; the check of the hash and the removal are one atomic step, so an
  entry that still describes its promise is never removed.
  Replay: the first run removed the member, so a resend answers { 0 } and decrements
  nothing.
]]
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then
  return { 0 }
end
local h = redis.call('HMGET', KEYS[1], 'state', 'created_at')
if h[1] == ARGV[2] and tonumber(h[2]) == tonumber(score) then
  return { 0 }
end
redis.call('ZREM', KEYS[2], ARGV[1])
local group = string.match(ARGV[1], '^([^|]*)|') or ''
redis.call('HINCRBY', KEYS[3], ARGV[2] .. '|' .. group, -1)
return { 1 }
