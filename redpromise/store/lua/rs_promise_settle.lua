--[[
rs_promise_settle: the Resonate protocol's promise.settle (docs/resonate.md).

  KEYS[1] promise hash      {ns:k}:p:<id>   (k = the id's family partition)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] state: resolved | rejected | rejected_canceled
  ARGV[7] the protocol value JSON as given ('' = absent)
  ARGV[8] the redpromise value (msgpack, made in Python from ARGV[7])

  Returns
    { 200, record }   settled now (its task fulfilled, awaiters resumed, listeners
                      unblocked), or already settled: returned as it is, nothing written
    { 404 }           no such promise
  Fence rule: none (task.fence and task.fulfill are the fenced ways).
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
--- @include rs_create
local now = rs_clock()
rs_eager(KEYS[1], now)
local status, raw = rs_settle_req(KEYS[1], now, 6)
if status == 404 then
  return { 404 }
end
return { 200, raw }
