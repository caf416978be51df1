--[[
rs_task_suspend: the Resonate protocol's task.suspend: the task awaits promises and lets
  go of its lease until one settles (docs/resonate.md).

  KEYS[1] promise hash (the task's)
  KEYS[2..] the awaited promises' hashes (their families' partitions)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] version

  Returns
    { 200 }           suspended: a callback on every awaited promise, lease and
                      timeout gone, resumes cleared
    { 300, preload }  an awaited promise is settled already: stays acquired, resumes
                      cleared, no callback stored
    { 404 }           no such task
    { 409, what }     'state': not acquired (or its promise settled); 'version'
    { 422 }           an awaited promise does not exist
  Fence rule: only the holder of the acquired task at exactly ARGV[6] suspends.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local pkey = KEYS[1]
for i = 1, #KEYS do
  rs_eager(KEYS[i], now)
end
local why = rs_unheld(pkey, now, ARGV[6])
if why == 404 then
  return { 404 }
elseif why then
  return { 409, why }
end
local settled = false
for i = 2, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if not state then
    return { 422 }
  end
  if state ~= 'pending' then
    settled = true
  end
end
redis.call('DEL', rs_key(pkey, 'rr'))
if settled then
  return { 300, rs_preload(pkey) }
end
local awaits = rs_key(pkey, 'ra')
for i = 2, #KEYS do
  redis.call('SADD', rs_key(KEYS[i], 'rc'), pkey)
  redis.call('SADD', awaits, KEYS[i])
end
redis.call('HSET', pkey, 't_state', 'suspended')
redis.call('HDEL', pkey, 't_pid', 't_ttl', 't_tt')
redis.call('ZREM', rs_tag(pkey) .. ':rtt', rs_id(pkey))
return { 200 }
