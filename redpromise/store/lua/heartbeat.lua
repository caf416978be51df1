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
  Fence rule: checks version AND PEL ownership before the XCLAIM, because XCLAIM itself
  checks no owner and would steal the entry back from a live worker.
  Replay: a resend checks version and ownership again and only resets the idle time once
  more (JUSTID leaves the delivery count alone): the same state as one call.
]]
local h = redis.call('HMGET', KEYS[1], 'state', 'version')
if not h[1] then
  return { -1 }
end
if h[1] ~= 'pending' then
  return { -2, h[1] }
end
-- A promise never acquired has no version field: version 0 (create.lua writes no defaults).
if (h[2] or '0') ~= ARGV[3] then
  return { -3 }
end
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[4], ARGV[4], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then
  return { -6 }
end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[4], 'JUSTID')
return { 1 }
