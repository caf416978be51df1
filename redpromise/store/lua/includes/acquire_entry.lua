-- acquire_entry(): the one definition of acquiring a delivered stream entry, shared by
-- acquire.lua (one entry, delivered by XREADGROUP or XAUTOCLAIM) and take.lua (every entry
-- its own XREADGROUP delivered). Needs now.lua, text.lua, settle.lua and dead.lua.
--   K, A: acquire.lua's KEYS and ARGV, in its layout (see its header): acquire.lua passes
--      its own, take.lua a pair of tables it fills in per entry (no table built per call
--      here: acquire is the hot path, and each table costs it instructions)
-- Returns acquire.lua's reply (see its header). An error reading the promise's hash (a
-- key of another type) comes back as { 0, error text }, nothing written: the one reply
-- that says the entry itself is unreadable (a failed script call says nothing about it).
local function drop_entry(K, A)
  redis.call('XACK', K[3], A[3], A[2])
  redis.call('XDEL', K[3], A[2])
end
local function acquire_entry(K, A)
  local h = redis.pcall('HMGET', K[1], 'state', 'group', 'entry', 'deliveries', 'version',
    'func', 'args', 'attempt', 'timeout_at', 'retry', 'token')
  if h.err then
    return { 0, h.err }
  end
  if not h[1] then
    drop_entry(K, A)
    return { -1 }
  end
  if h[1] ~= 'pending' then
    drop_entry(K, A)
    return { -2 }
  end
  if h[2] ~= A[3] then
    drop_entry(K, A)
    return { -5 }
  end
  if h[3] ~= A[2] then
    drop_entry(K, A)
    return { -4 }
  end
  local version = tonumber(h[5]) or 0
  -- Only an acquired execution can checkpoint, so before the first acquire there is none.
  local steps = {}
  if A[9] ~= '' and h[11] == A[9] then
    if version > 1 then
      steps = redis.call('HGETALL', K[2])
    end
    return { 1, version, h[6], h[7], h[8], h[9], h[10], tonumber(h[4]), steps }
  end
  local deliveries = (tonumber(h[4]) or 0) + 1
  if deliveries > tonumber(A[5]) then
    redis.call('HSET', K[1], 'deliveries', deliveries)
    -- The record keeps the function and arguments (settle drops them from the hash), so
    -- an operator can requeue the work as a new promise (redpromise/client/inspect.py).
    to_dead(K[4], A[10], tonumber(A[11]), { 'id', A[1], 'group', A[3], 'entry', A[2],
      'deliveries', deliveries, 'func', h[6] or '', 'args', h[7] or '' })
    -- Read on this rare path only: one field fewer in the HMGET every acquire runs.
    local created_at = redis.call('HGET', K[1], 'created_at')
    local done = settle(K[1], K[2], K[3], K[5], K[6], A[1], A[3], 'rejected', A[6], A[7],
      A[8], '', A[2], A[12], { K[7], K[8], K[9], created_at }, now_ms())
    -- As complete.lua: created_at as read, completed_at as settle stored it.
    return { -7, h[6], created_at, done }
  end
  -- version and deliveries go to Redis as Lua numbers: small integers, which Redis formats
  -- more cheaply than int_text() would (measured: +1k instructions per acquire with it).
  version = version + 1
  redis.call('HSET', K[1], 'version', version, 'deliveries', deliveries, 'owner', A[4],
    'token', A[9])
  if version > 1 then
    steps = redis.call('HGETALL', K[2])
  end
  return { 1, version, h[6], h[7], h[8], h[9], h[10], deliveries, steps }
end
