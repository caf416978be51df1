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
  Fence rule: includes/fenced_read.lua, for the caller's version (a promise never
  acquired is at version 0), checked before the write.
  Replay: HSETNX keeps the first outcome of a step, so a resend answers { 1 } and changes
  nothing; the fence is checked again, so a resend can never write for a stale version.
]]
--- @include fenced_read
local refused = fenced_read(KEYS[1], nil, ARGV[1])
if refused then
  return refused
end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
return { 1 }
