--[[
rs_promise_create: the Resonate protocol's promise.create (docs/resonate.md).

  KEYS[1] promise hash      {ns:k}:p:<id>   (k = the id's family partition)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6..15] the new record's fields (includes/rs_create.lua)

  Returns
    { 200, record }   created now (pending, or born timed out when now >= timeoutAt), or
                      the existing promise as it is after the eager timeout (idempotent
                      by id: nothing written then)
  A target tag makes a task (and an execute message, unless deferred): rs_create.lua.
  Fence rule: none; creation is keyed by id only.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
--- @include rs_create
local now = rs_clock()
rs_eager(KEYS[1], now)
if redis.call('EXISTS', KEYS[1]) == 1 then
  return { 200, rs_raw(KEYS[1]) }
end
return { 200, rs_create(KEYS[1], now, 6) }
