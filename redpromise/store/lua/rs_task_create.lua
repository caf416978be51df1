--[[
rs_task_create: the Resonate protocol's task.create: create a promise with a target and
  acquire its task in one step (docs/resonate.md).

  KEYS[1] promise hash      {ns:k}:p:<id>   (k = the id's family partition)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] pid   ARGV[7] ttl (ms)
  ARGV[8..17] the new record's fields (includes/rs_create.lua)

  Returns
    { 200, task, record, preload }  created and acquired at version 1 (a lease timeout
                      at now + ttl); or born timed out (task fulfilled, empty preload); or
                      an existing pending task acquired (version + 1); or an existing
                      fulfilled task as it is
    { 409, what }     'task': its task exists in another state; 'promise': the promise
                      exists without a task
    { 422 }           the promise exists and has no target
  Fence rule: an existing task is acquired only from pending.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
--- @include rs_create
local now = rs_clock()
local pkey = KEYS[1]
rs_eager(pkey, now)
local ttl_due = int_text(now + tonumber(ARGV[7]))
local t = redis.call('HMGET', pkey, 't_state', 't_version')
if t[1] == 'pending' then
  redis.call('HSET', pkey, 't_state', 'acquired', 't_version', int_text(tonumber(t[2]) + 1),
    't_pid', ARGV[6], 't_ttl', ARGV[7], 't_tt', '1')
  redis.call('DEL', rs_key(pkey, 'rr'))
  redis.call('ZADD', rs_tag(pkey) .. ':rtt', ttl_due, rs_id(pkey))
  return { 200, rs_task_raw(pkey), rs_raw(pkey), rs_preload(pkey) }
elseif t[1] == 'fulfilled' then
  return { 200, rs_task_raw(pkey), rs_raw(pkey), rs_preload(pkey) }
elseif t[1] then
  return { 409, 'task' }
end
if redis.call('EXISTS', pkey) == 1 then
  if (redis.call('HGET', pkey, 'rs_target') or '') == '' then
    return { 422 }
  end
  return { 409, 'promise' }
end
if rs_insert(pkey, now, 8) then
  redis.call('HSET', pkey, 't_state', 'fulfilled', 't_version', '0')
  return { 200, rs_task_raw(pkey), rs_raw(pkey), {} }
end
redis.call('HSET', pkey, 't_state', 'acquired', 't_version', '1', 't_pid', ARGV[6],
  't_ttl', ARGV[7], 't_tt', '1')
redis.call('ZADD', rs_tag(pkey) .. ':rtt', ttl_due, rs_id(pkey))
return { 200, rs_task_raw(pkey), rs_raw(pkey), rs_preload(pkey) }
