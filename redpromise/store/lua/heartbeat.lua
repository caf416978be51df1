--[[
heartbeat: extend the caller's lease on one in-flight entry.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] target stream     {ns:k}:q:<group>

  ARGV[1] group
  ARGV[2] consumer name
  ARGV[3] version of the caller's execution
  ARGV[4] stream entry id

  Returns
    { 1 }        lease extended (XCLAIM … JUSTID to itself: idle reset, count unchanged)
    { -1 }       no such promise
    { -2, state } promise no longer pending (its completed state): stop the execution
    { -3 }       fenced out: another execution owns the promise: stop
    { -6 }       the entry is not in this consumer's pending list: stop
  Fence rule: includes/fenced_read.lua for the caller's version, AND PEL ownership, both
  checked before the XCLAIM, because XCLAIM itself checks no owner and would steal the entry back from a live worker.
  Replay: a resend checks version and ownership again and only resets the idle time once
  more (JUSTID leaves the delivery count alone): the same state as one call.
]]
--- @include fenced_read
local refused = fenced_read(KEYS[1], nil, ARGV[3])
if refused then
  return refused
end
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[4], ARGV[4], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then
  return { -6 }
end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[4], 'JUSTID')
return { 1 }
