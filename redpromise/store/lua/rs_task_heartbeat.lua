--[[
rs_task_heartbeat: the Resonate protocol's task.heartbeat: renew the leases of the given
  tasks that pid holds (docs/resonate.md).

  KEYS[1..n] the tasks' promise hashes (one partition per call: Python groups them)
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] pid   ARGV[6+i] the version of KEYS[i]

  Returns
    { 200 }   every task acquired by pid at its version, whose promise is not past its
              timeout, has its lease timeout moved to now + its ttl; the others are
              left alone (no eager timeout here, as the reference)
  Fence rule: a lease moves only for the holder (pid) at the version.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
for i = 1, #KEYS do
  local pkey = KEYS[i]
  local why, h = rs_unheld(pkey, now, ARGV[6 + i], 't_pid', 't_ttl')
  if not why and h[3] == ARGV[6] then
    redis.call('ZADD', rs_tag(pkey) .. ':rtt', int_text(now + (tonumber(h[4]) or RS_RETRY_MS)),
      rs_id(pkey))
    redis.call('HSET', pkey, 't_tt', '1')
  end
end
return { 200 }
