--[[
rs_task_release: the Resonate protocol's task.release: acquired -> pending, offered again
  at once (an execute message at the same version) (docs/resonate.md).

  KEYS[1] promise hash (the task's)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] version

  Returns
    { 200 }           released (a retry timeout at now + 30 s)
    { 404 }           no such task
    { 409, what }     'state': not acquired (or its promise settled); 'version'
  Fence rule: releases only an acquired task at exactly ARGV[6].
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local why, t = rs_unheld(pkey, now, ARGV[6], 'rs_target')
if why == 404 then
  return { 404 }
elseif why then
  return { 409, why }
end
redis.call('HSET', pkey, 't_state', 'pending', 't_tt', '0')
redis.call('HDEL', pkey, 't_pid', 't_ttl')
redis.call('ZADD', rs_tag(pkey) .. ':rtt', int_text(now + RS_RETRY_MS), rs_id(pkey))
rs_send(pkey, t[3] or '', 'e', t[2])
return { 200 }
