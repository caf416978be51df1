--[[
rs_task_halt: the Resonate protocol's task.halt: stop offering a task until continued.

  KEYS[1] promise hash (the task's)
  ARGV[1..5] common (includes/rs_core.lua)

  Returns
    { 200 }   halted (lease and timeout gone; version and resumes kept), or already
    { 404 }   no such task
    { 409 }   the task is fulfilled
  Fence rule: none (an operator's action).
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local t = redis.call('HGET', pkey, 't_state')
if not t then
  return { 404 }
end
if t == 'fulfilled' then
  return { 409 }
end
if t ~= 'halted' then
  redis.call('HSET', pkey, 't_state', 'halted')
  redis.call('HDEL', pkey, 't_pid', 't_ttl', 't_tt')
  redis.call('ZREM', rs_tag(pkey) .. ':rtt', rs_id(pkey))
end
return { 200 }
