--[[
promote: dispatch one due member of the delayed set to its group's stream.

  KEYS[1] delayed zset      {ns:k}:delayed
  KEYS[2] promise hash      {ns:k}:p:<id>
  KEYS[3] target stream     {ns:k}:q:<group>

  ARGV[1] id
  ARGV[2] group

  Returns
    { 1 }        dispatched (new entry written, delivery count reset)
    { 0 }        nothing to do (not in the set, or already has an entry)
    { -2 }       promise no longer pending: member removed
    { -8 }       not due yet
  Fence rule: none needed; the move and the state check are one atomic step, and a
  promise with a live entry is never dispatched twice.
]]
--- @include now
local member = ARGV[2] .. '|' .. ARGV[1]
local due = redis.call('ZSCORE', KEYS[1], member)
if not due then
  return { 0 }
end
if tonumber(due) > now_ms() then
  return { -8 }
end
redis.call('ZREM', KEYS[1], member)
local h = redis.call('HMGET', KEYS[2], 'state', 'entry')
if h[1] ~= 'pending' then
  return { -2 }
end
if h[2] and h[2] ~= '' then
  return { 0 }
end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[2], 'entry', entry, 'deliveries', 0)
return { 1 }
