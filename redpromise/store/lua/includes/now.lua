-- now(): the server's wall clock in milliseconds. Every script reads time from Redis,
-- never from the caller, so all processes share one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
