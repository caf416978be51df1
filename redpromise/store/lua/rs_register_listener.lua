--[[
rs_register_listener: the Resonate protocol's promise.register_listener.

  KEYS[1] awaited promise hash   (its family's partition)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] the listener's address

  Returns
    { 200, record }   the promise (after the eager timeout); the address is stored only
                      while it is pending, and gets one unblock message when it settles
    { 404 }           no such promise
    { 422 }           not awaitable: not external (global scope, external, target or
                      timer tag)
  Fence rule: none.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
rs_eager(KEYS[1], now)
local h = redis.call('HMGET', KEYS[1], 'state', 'rs_ext')
if not h[1] then
  return { 404 }
end
if h[2] ~= '1' then
  return { 422 }
end
if h[1] == 'pending' then
  redis.call('SADD', rs_key(KEYS[1], 'rl'), ARGV[6])
end
return { 200, rs_raw(KEYS[1]) }
