--[[
rs_task_fulfill: the Resonate protocol's task.fulfill: settle the task's own promise and
  fulfill the task (docs/resonate.md).

  KEYS[1] promise hash (the task's; the action's promise is the same id)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] version   ARGV[7] state   ARGV[8] value JSON ('' = absent)
  ARGV[9] the redpromise value (msgpack, made in Python from ARGV[8])

  Returns
    { 200, record }   settled (awaiters resumed, listeners unblocked) and fulfilled
    { 404 }           no such task
    { 409, what }     'state': not acquired (or its promise settled); 'version'
  Fence rule: only the holder of the acquired task at exactly ARGV[6] settles.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
--- @include rs_create
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local why = rs_unheld(pkey, now, ARGV[6])
if why == 404 then
  return { 404 }
elseif why then
  return { 409, why }
end
local _, raw = rs_settle_req(pkey, now, 7)
return { 200, raw }
