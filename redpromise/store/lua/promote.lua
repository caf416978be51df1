--[[
promote: dispatch one due member of the delayed set to its group's stream.

  KEYS[1] delayed zset      {ns:k}:delayed
  KEYS[2] promise hash      {ns:k}:p:<id>
  KEYS[3] target stream     {ns:k}:q:<group>

  ARGV[1] id
  ARGV[2] group

  Returns
    { 1 }        dispatched (new entry written, delivery count reset)
    { 0 }        nothing to do (not in the set, or already has an entry: member removed)
    { -2 }       promise missing (expired, deleted) or no longer pending: member removed
    { -5 }       the promise targets another group than the member names: member removed,
                 nothing dispatched (reconcile re-dispatches a promise left without one)
    { -8 }       not due yet
  Fence rule: none needed; the move and the state check are one atomic step, and a
  promise with a live entry is never dispatched twice. Every due member is removed, so
  none can hold one of the due slots promote reads per partition.
  Replay: the first run removed the member, so a resend answers { 0 } and writes nothing.
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
local h = redis.call('HMGET', KEYS[2], 'state', 'entry', 'group')
if h[1] ~= 'pending' then
  return { -2 }
end
if h[3] ~= ARGV[2] then
  return { -5 }
end
if h[2] and h[2] ~= '' then
  return { 0 }
end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[2], 'entry', entry, 'deliveries', 0)
return { 1 }
