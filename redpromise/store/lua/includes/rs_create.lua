-- rs_create: a new protocol promise's record (needs rs_core.lua).
-- The fields come from ARGV[o .. o+9], made by Python (redpromise/store/protocol_records.py):
--   o+0 timeoutAt   o+1 param JSON ('' = absent)   o+2 tags JSON   o+3 target ('' = none)
--   o+4 timer '1'|'0'   o+5 external '1'|'0'   o+6 branch ('' = none)
--   o+7 resonate:delay as a number ('' = not a finite number)   o+8 group   o+9 func

-- rs_insert(): writes the record: pending (created now), or, when now >= timeoutAt,
-- already timed out (created and settled at timeoutAt). Either way it enters redpromise's
-- pending index first and settle() moves it, so counters and completion messages follow.
-- Returns true when the promise was born timed out.
local function rs_insert(pkey, now, o)
  local timeout_at = tonumber(ARGV[o])
  local born_late = now >= timeout_at
  local created = int_text(now)
  if born_late then
    created = int_text(timeout_at)
  end
  local id = rs_id(pkey)
  local tag = rs_tag(pkey)
  local group = ARGV[o + 8]
  local fields = { 'state', 'pending', 'func', ARGV[o + 9], 'group', group,
    'created_at', created, 'timeout_at', int_text(timeout_at), 'codec', 'resonate',
    'rs_value', '{}', 'rs_tags', ARGV[o + 2] }
  if ARGV[o + 1] ~= '' then
    fields[#fields + 1] = 'rs_param'
    fields[#fields + 1] = ARGV[o + 1]
  end
  if ARGV[o + 3] ~= '' then
    fields[#fields + 1] = 'rs_target'
    fields[#fields + 1] = ARGV[o + 3]
  end
  if ARGV[o + 4] == '1' then
    fields[#fields + 1] = 'rs_timer'
    fields[#fields + 1] = '1'
  end
  if ARGV[o + 5] == '1' then
    fields[#fields + 1] = 'rs_ext'
    fields[#fields + 1] = '1'
  end
  if ARGV[o + 6] ~= '' then
    fields[#fields + 1] = 'rs_branch'
    fields[#fields + 1] = ARGV[o + 6]
    redis.call('SADD', tag .. ':rb:' .. ARGV[o + 6], pkey)
  end
  redis.call('HSET', pkey, unpack(fields))
  local member = group .. '|' .. id
  if redis.call('ZADD', tag .. ':i:pending', created, member) == 1 then
    redis.call('HINCRBY', tag .. ':n', 'pending|' .. group, '1')
  end
  if born_late then
    local state, value = rs_timeout_state(pkey)
    rs_settle(pkey, state, nil, value, timeout_at)
  elseif ARGV[o + 3] ~= '' then
    -- Only a promise with a target is timed out by the tick (as the reference).
    redis.call('ZADD', tag .. ':rpt', int_text(timeout_at), id)
  end
  return born_late
end

-- rs_create(): promise.create's transition for an absent promise; returns its raw record.
-- A target makes a task: fulfilled at version 0 for a promise born timed out, else
-- pending at version 0 with an execute message now, or its retry timeout at
-- resonate:delay when that is still ahead (a deferred first message).
local function rs_create(pkey, now, o)
  local born_late = rs_insert(pkey, now, o)
  local target = ARGV[o + 3]
  if target ~= '' then
    if born_late then
      redis.call('HSET', pkey, 't_state', 'fulfilled', 't_version', '0')
    else
      redis.call('HSET', pkey, 't_state', 'pending', 't_version', '0', 't_tt', '0')
      local delay = tonumber(ARGV[o + 7])
      if delay and now < delay then
        redis.call('ZADD', rs_tag(pkey) .. ':rtt', ARGV[o + 7], rs_id(pkey))
      else
        redis.call('ZADD', rs_tag(pkey) .. ':rtt', int_text(now + RS_RETRY_MS), rs_id(pkey))
        rs_send(pkey, target, 'e', '0')
      end
    end
  end
  return rs_raw(pkey)
end

-- rs_settle_req(): promise.settle's transition after the eager timeout; returns
-- 404 or 200 and the raw record (an already settled promise answers as it is).
-- ARGV[o] state, ARGV[o+1] protocol value JSON ('' = absent), ARGV[o+2] redpromise value.
local function rs_settle_req(pkey, now, o)
  local state = redis.call('HGET', pkey, 'state')
  if not state then
    return 404, nil
  end
  if state == 'pending' then
    local rs_value = ARGV[o + 1]
    if rs_value == '' then
      redis.call('HDEL', pkey, 'rs_value')
      rs_value = nil
    end
    rs_settle(pkey, ARGV[o], rs_value, ARGV[o + 2], now)
    rs_trigger(pkey, now)
  end
  return 200, rs_raw(pkey)
end
