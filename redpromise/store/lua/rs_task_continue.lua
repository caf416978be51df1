--[[
rs_task_continue: the Resonate protocol's task.continue: a halted task is pending again
  and offered at once (an execute message at its version).

  KEYS[1] promise hash (the task's)
  ARGV[1..5] common (includes/rs_core.lua)

  Returns
    { 200 }   pending (a retry timeout at now + 30 s)
    { 404 }   no such task
    { 409 }   the task is not halted
  Fence rule: none (an operator's action).
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local t = redis.call('HMGET', pkey, 't_state', 't_version', 'rs_target')
if not t[1] then
  return { 404 }
end
if t[1] ~= 'halted' then
  return { 409 }
end
redis.call('HSET', pkey, 't_state', 'pending', 't_tt', '0')
redis.call('ZADD', rs_tag(pkey) .. ':rtt', int_text(now + RS_RETRY_MS), rs_id(pkey))
rs_send(pkey, t[3] or '', 'e', t[2] or '0')
return { 200 }
