-- acquire_entry(): the one definition of acquiring a delivered stream entry, shared by
-- acquire.lua (one entry, delivered by XREADGROUP or XAUTOCLAIM) and take.lua (every entry
-- its own XREADGROUP delivered). Needs now.lua, text.lua, settle.lua and dead.lua.
--   keys, argv: acquire.lua's KEYS and ARGV, in its layout (see its header): acquire.lua
--      passes its own, take.lua a pair of tables it fills in per entry (no table built
--      per call here: acquire is the hot path, and each table costs it instructions;
--      named fields, or slot names as upvalues, measured +12-14 % Redis instructions per
--      acquire: bench/script_cost.py --callgrind)
-- Returns acquire.lua's reply (see its header). An error reading the promise's hash (a
-- key of another type) comes back as { 0, error text }, nothing written: the one reply
-- that says the entry itself is unreadable (a failed script call says nothing about it).
local function drop_entry(keys, argv)
  redis.call('XACK', keys[3], argv[3], argv[2])
  redis.call('XDEL', keys[3], argv[2])
end
local function acquire_entry(keys, argv)
  local h = redis.pcall('HMGET', keys[1], 'state', 'group', 'entry', 'deliveries',
    'version', 'func', 'args', 'attempt', 'timeout_at', 'retry', 'token', 'codec')
  if h.err then
    return { 0, h.err }
  end
  if not h[1] then
    drop_entry(keys, argv)
    return { -1 }
  end
  -- A Resonate protocol promise's entry is a message for the protocol's workers (serve
  -- offers it to an SDK process): never dropped, counted or fenced here. It stays in the
  -- caller's pending list, where serve's consumers claim it once idle (XAUTOCLAIM).
  -- The reply carries what a worker that serves protocol tasks needs to decide whether to
  -- acquire it through the protocol (redpromise/worker/protocol_tasks.py).
  if h[12] == 'resonate' then
    local t = redis.call('HMGET', keys[1], 't_state', 't_version', 'rs_param')
    local kind, v = '', ''
    local e = redis.call('XRANGE', keys[3], argv[2], argv[2])
    if e[1] then
      local f = e[1][2]
      for j = 1, #f - 1, 2 do
        if f[j] == 'k' then
          kind = f[j + 1]
        elseif f[j] == 'v' then
          v = f[j + 1]
        end
      end
    end
    return { -9, h[1], t[1] or '', t[2] or '', t[3] or '', h[9] or '', kind, v }
  end
  if h[1] ~= 'pending' then
    drop_entry(keys, argv)
    return { -2 }
  end
  if h[2] ~= argv[3] then
    drop_entry(keys, argv)
    return { -5 }
  end
  if h[3] ~= argv[2] then
    drop_entry(keys, argv)
    return { -4 }
  end
  local version = tonumber(h[5]) or 0
  -- Only an acquired execution can checkpoint, so before the first acquire there is none.
  local steps = {}
  if argv[9] ~= '' and h[11] == argv[9] then
    if version > 1 then
      steps = redis.call('HGETALL', keys[2])
    end
    return { 1, version, h[6], h[7], h[8], h[9], h[10], tonumber(h[4]), steps }
  end
  local deliveries = (tonumber(h[4]) or 0) + 1
  if deliveries > tonumber(argv[5]) then
    redis.call('HSET', keys[1], 'deliveries', deliveries)
    -- The record keeps the function and arguments (settle drops them from the hash), so
    -- an operator can requeue the work as a new promise (redpromise/client/inspect.py).
    to_dead(keys[4], argv[10], tonumber(argv[11]), { 'id', argv[1], 'group', argv[3],
      'entry', argv[2], 'deliveries', deliveries, 'func', h[6] or '', 'args', h[7] or '' })
    -- Read on this rare path only: one field fewer in the HMGET every acquire runs.
    local created_at = redis.call('HGET', keys[1], 'created_at')
    local done = settle(keys[1], keys[2], keys[3], keys[5], keys[6], argv[1], argv[3],
      'rejected', argv[6], argv[7], argv[8], '', argv[2], argv[12],
      { keys[7], keys[8], keys[9], created_at }, now_ms())
    -- As complete.lua: created_at as read, completed_at as settle stored it.
    return { -7, h[6], created_at, done }
  end
  -- version and deliveries go to Redis as Lua numbers: small integers, which Redis formats
  -- more cheaply than int_text() would (measured: +1k instructions per acquire with it).
  version = version + 1
  redis.call('HSET', keys[1], 'version', version, 'deliveries', deliveries, 'owner',
    argv[4], 'token', argv[9])
  if version > 1 then
    steps = redis.call('HGETALL', keys[2])
  end
  return { 1, version, h[6], h[7], h[8], h[9], h[10], deliveries, steps }
end
