--[[
rs_register_callback: the Resonate protocol's promise.register_callback.

  KEYS[1] awaited promise hash   (its family's partition)
  KEYS[2] awaiter promise hash   (its family's partition: the same slot on a Cluster)
  ARGV[1..5] common (includes/rs_core.lua)

  Returns
    { 200, record }   the awaited promise (after both eager timeouts); the callback is
                      stored only while both promises are pending
    { 404 }           no awaited promise
    { 422, why }      no awaiter promise ('awaiter'), or it has no target ('address')
  Fence rule: none.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
rs_eager(KEYS[1], now)
rs_eager(KEYS[2], now)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 404 }
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return { 422, 'awaiter' }
end
if (redis.call('HGET', KEYS[2], 'rs_target') or '') == '' then
  return { 422, 'address' }
end
if redis.call('HGET', KEYS[1], 'state') == 'pending'
    and redis.call('HGET', KEYS[2], 'state') == 'pending' then
  redis.call('SADD', rs_key(KEYS[1], 'rc'), KEYS[2])
  redis.call('SADD', rs_key(KEYS[2], 'ra'), KEYS[1])
end
return { 200, rs_raw(KEYS[1]) }
