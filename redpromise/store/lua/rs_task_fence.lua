--[[
rs_task_fence: the Resonate protocol's task.fence: a promise.create or promise.settle
  applied only while the caller holds the task at its version (docs/resonate.md).

  KEYS[1] promise hash (the task's)
  KEYS[2] the action's promise hash (its family's partition: the same slot on a Cluster)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] version   ARGV[7] 'create' | 'settle'
  ARGV[8..] the action's fields: create as rs_create.lua's ARGV[o..o+9], settle as
          rs_settle_req's (state, value JSON, redpromise value)

  Returns
    { 200, 200, record }  the action's answer: created or existing / settled or as it is
    { 200, 404 }          settle of an absent promise
    { 404 }               no such task
    { 409 }               fence check failed: not acquired, its promise settled, or
                          another version
  Fence rule: the action runs only for the acquired task at exactly ARGV[6].
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
--- @include rs_create
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
rs_eager(KEYS[2], now)
local why = rs_unheld(pkey, now, ARGV[6])
if why == 404 then
  return { 404 }
elseif why then
  return { 409 }
end
if ARGV[7] == 'create' then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return { 200, 200, rs_raw(KEYS[2]) }
  end
  return { 200, 200, rs_create(KEYS[2], now, 8) }
end
local status, raw = rs_settle_req(KEYS[2], now, 8)
if status == 404 then
  return { 200, 404 }
end
return { 200, 200, raw }
