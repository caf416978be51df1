--[[
rs_task_get: the Resonate protocol's task.get (docs/resonate.md).

  KEYS[1] promise hash (the task lives in its promise's hash: the same id)
  ARGV[1..5] common (includes/rs_core.lua)

  Returns
    { 200, task }   the task's raw fields (rs_core.lua's rs_task_raw), after the eager
                    timeout of its promise
    { 404 }         no such task
  Fence rule: none.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
rs_eager(KEYS[1], now)
if not redis.call('HGET', KEYS[1], 't_state') then
  return { 404 }
end
return { 200, rs_task_raw(KEYS[1]) }
