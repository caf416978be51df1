--[[
checkpoint: record the outcome of step `seq` of the current execution.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] steps hash        {ns:k}:s:<id>

  ARGV[1] version of the caller's execution
  ARGV[2] step seq
  ARGV[3] outcome (msgpack)

  Returns
    { 1 }        recorded (or already recorded: HSETNX makes a replay a no-op)
    { -1 }       no such promise
    { -2, state } promise no longer pending (completed, canceled, timed out): stop
    { -3 }       fenced out: another execution owns the promise: stop
  Fence rule: version must equal the stored version, checked before the write.
  Replay: HSETNX keeps the first outcome of a step, so a resend answers { 1 } and changes
  nothing; the fence is checked again, so a resend can never write for a stale version.
]]
local h = redis.call('HMGET', KEYS[1], 'state', 'version')
if not h[1] then
  return { -1 }
end
if h[1] ~= 'pending' then
  return { -2, h[1] }
end
-- A promise never acquired has no version field: version 0 (create.lua writes no defaults).
if (h[2] or '0') ~= ARGV[1] then
  return { -3 }
end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
return { 1 }
