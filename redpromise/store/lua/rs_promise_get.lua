--[[
rs_promise_get: the Resonate protocol's promise.get (docs/resonate.md).

  KEYS[1] promise hash      {ns:k}:p:<id>   (k = the id's family partition)
  ARGV[1..5] common (includes/rs_core.lua)

  Returns
    { 200, record }   the record's raw fields (rs_core.lua's rs_raw), after the eager
                      timeout: a pending promise past its timeoutAt settles first
    { 404 }           no such promise
  Fence rule: none.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
rs_eager(KEYS[1], now)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 404 }
end
return { 200, rs_raw(KEYS[1]) }
