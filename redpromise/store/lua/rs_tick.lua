--[[
rs_tick: the Resonate protocol's debug.tick for one partition: due promise timeouts and
  due task timeouts, as the reference's tick (docs/resonate.md).

  KEYS[1] promise timeouts zset  {ns:k}:rpt
  KEYS[2] task timeouts zset     {ns:k}:rtt
  ARGV[1..5] common (includes/rs_core.lua)
  ARGV[6] at most this many due promises and this many due tasks
  ARGV[7] the partition's promise key prefix ({ns:k}:p:)

  The task timeouts due are read first (what the reference's actions are), then:
  every due promise settles (timer -> resolved, else rejected_timedout, as of its
  timeoutAt), then their tasks are fulfilled, then their awaiters resumed and listeners
  unblocked; then each due lease whose task is still acquired at the version read is
  released (pending, execute message, retry timeout) and each due retry of a task still
  pending sends its execute message again.

  Returns
    { 200, n }   n: the promises settled and the tasks released or offered again
  Fence rule: every item is checked against the state it is read in, in one script, so
  replicas ticking together handle each due item once.
]]
--- @include now
--- @include text
--- @include settle
--- @include rs_core
local now = rs_clock()
local limit = tonumber(ARGV[6])
local prefix = ARGV[7]
local actions = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
  local h = redis.call('HMGET', prefix .. id, 't_state', 't_version', 't_tt')
  if h[3] == '1' and h[1] == 'acquired' then
    actions[#actions + 1] = { prefix .. id, 'release', h[2] }
  elseif h[3] == '0' and h[1] == 'pending' then
    actions[#actions + 1] = { prefix .. id, 'retry', h[2] }
  end
end
local settled = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local pkey = prefix .. id
  local h = redis.call('HMGET', pkey, 'state', 'timeout_at')
  if h[1] == 'pending' then
    local state, value = rs_timeout_state(pkey)
    rs_settle(pkey, state, '{}', value, tonumber(h[2]))
    settled[#settled + 1] = pkey
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
for _, pkey in ipairs(settled) do
  rs_fulfill(pkey)
end
for _, pkey in ipairs(settled) do
  rs_callbacks(pkey, now)
  rs_listeners(pkey)
end
local n = #settled
for _, a in ipairs(actions) do
  local h = redis.call('HMGET', a[1], 't_state', 't_version', 'rs_target')
  if a[2] == 'release' and h[1] == 'acquired' and h[2] == a[3] then
    redis.call('HSET', a[1], 't_state', 'pending', 't_tt', '0')
    redis.call('HDEL', a[1], 't_pid', 't_ttl')
    redis.call('ZADD', KEYS[2], int_text(now + RS_RETRY_MS), rs_id(a[1]))
    rs_send(a[1], h[3] or '', 'e', h[2])
    n = n + 1
  elseif a[2] == 'retry' and h[1] == 'pending' then
    redis.call('ZADD', KEYS[2], int_text(now + RS_RETRY_MS), rs_id(a[1]))
    rs_send(a[1], h[3] or '', 'e', h[2])
    n = n + 1
  end
end
return { 200, n }
