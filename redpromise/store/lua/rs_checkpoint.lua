--[[
rs_checkpoint: record one step of a Resonate protocol task that a redpromise worker runs
  (redpromise's extension of the protocol: docs/resonate.md, "Python workers of a
  protocol group"). The steps live in redpromise's steps hash of the promise, deleted when
  the promise settles, so a successor of a killed worker replays the recorded steps.

  KEYS[1] promise hash  <tag>:p:<id>
  KEYS[2] steps hash    <tag>:s:<id>
  ARGV[1] the task version the worker acquired
  ARGV[2] the worker's pid (the consumer name it acquired the task as)
  ARGV[3] step number   ARGV[4] the step's outcome (msgpack)

  Returns
    { 1 }         recorded
    { -1 }        no such promise
    { -2, state } the promise is no longer pending
    { -3 }        the task is not acquired by ARGV[2] at version ARGV[1] (its lease lapsed
                  and it was offered again, or it was fulfilled): nothing written
  Fence rule: a step is written only by the task's holder at the task's current version.
]]
local h = redis.call('HMGET', KEYS[1], 'state', 't_state', 't_version', 't_pid')
if not h[1] then
  return { -1 }
end
if h[1] ~= 'pending' then
  return { -2, h[1] }
end
if h[2] ~= 'acquired' or tonumber(h[3]) ~= tonumber(ARGV[1]) or h[4] ~= ARGV[2] then
  return { -3 }
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return { 1 }
