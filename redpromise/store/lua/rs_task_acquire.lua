--[[
rs_task_acquire: the Resonate protocol's task.acquire: pending at version v -> acquired at
  v + 1 by pid, with a lease of ttl ms (docs/resonate.md).

  KEYS[1] promise hash (the task's)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] version   ARGV[7] pid   ARGV[8] ttl (ms)

  Returns
    { 200, task, record, preload }  acquired; the buffered resumes are cleared
    { 404 }           no such task
    { 409, what }     'state': not pending; 'fulfilled': its promise is settled;
                      'version': another version
  Fence rule: acquires only a pending task at exactly ARGV[6].
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local t = redis.call('HMGET', pkey, 't_state', 't_version')
if not t[1] then
  return { 404 }
end
if t[1] ~= 'pending' then
  return { 409, 'state' }
end
if not rs_logically_pending(pkey, now) then
  return { 409, 'fulfilled' }
end
if tonumber(t[2]) ~= tonumber(ARGV[6]) then
  return { 409, 'version' }
end
redis.call('HSET', pkey, 't_state', 'acquired', 't_version', int_text(tonumber(t[2]) + 1),
  't_pid', ARGV[7], 't_ttl', ARGV[8], 't_tt', '1')
redis.call('DEL', rs_key(pkey, 'rr'))
redis.call('ZADD', rs_tag(pkey) .. ':rtt', int_text(now + tonumber(ARGV[8])), rs_id(pkey))
return { 200, rs_task_raw(pkey), rs_raw(pkey), rs_preload(pkey) }
