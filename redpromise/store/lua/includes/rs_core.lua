-- rs_core: what every Resonate protocol script shares (docs/resonate.md).
-- Needs now.lua, text.lua and settle.lua.
--
-- Common ARGV of every rs_* script:
--   ARGV[1] now in ms ('' = Redis TIME)
--   ARGV[2] 'PUBLISH' or 'SPUBLISH': how redpromise's completion channel is announced
--   ARGV[3] the protocol's unicast channel (<ns>:rs:poll)
--   ARGV[4] redpromise value of a promise that timed out (rejected_timedout)
--   ARGV[5] redpromise value of a timer promise that fired (resolved)
-- Keys of one promise are derived from its hash key '<tag>:p:<id>': '<tag>:<kind>:<id>'
-- (rc callbacks, ra the callbacks a task holds, rl listeners, rr resumes, rb:<branch>),
-- partition keys from its tag (rpt, rtt, i:<state>, n, c, q:<group>). A callback's
-- awaiter may live in another family: its key is the set member itself.

local RS_RETRY_MS = 30000  -- a pending task's message is sent again after this long

local function rs_clock()
  local n = tonumber(ARGV[1])
  if n then
    return n
  end
  return now_ms()
end

local function rs_tag(pkey)
  return string.sub(pkey, 1, string.find(pkey, '}', 1, true))
end

local function rs_id(pkey)
  return string.sub(pkey, #rs_tag(pkey) + 4)
end

local function rs_key(pkey, kind)
  local tag = rs_tag(pkey)
  return tag .. ':' .. kind .. ':' .. string.sub(pkey, #tag + 4)
end

-- A message to an address, as the spec's delivery reads it: poll://any@G[/P] goes to
-- the group's stream of the promise's partition, poll://uni@G/P is published on the
-- protocol channel (the id last: it may hold any character); other schemes are not
-- delivered. kind: 'e' execute (version = the task's), 'u' unblock (version 0).
local function rs_send(pkey, address, kind, version)
  local id = rs_id(pkey)
  local group, rest = string.match(address, '^poll://any@([^/]+)(.*)$')
  if group then
    if rest ~= '' then
      redis.call('XADD', rs_tag(pkey) .. ':q:' .. group, '*', 'id', id, 'k', kind,
        'v', version, 'p', string.sub(rest, 2))
    else
      redis.call('XADD', rs_tag(pkey) .. ':q:' .. group, '*', 'id', id, 'k', kind,
        'v', version)
    end
  elseif string.match(address, '^poll://uni@[^/]+/.') then
    -- pcall: a refused PUBLISH (ACL) must not turn stored writes into an error reply.
    redis.pcall('PUBLISH', ARGV[3], kind .. '\n' .. version .. '\n' .. address .. '\n' .. id)
  end
end

-- The raw fields of a promise record for Python to build from ('' = absent field).
local function rs_raw(pkey)
  local h = redis.call('HMGET', pkey, 'state', 'rs_param', 'rs_value', 'rs_tags',
    'timeout_at', 'created_at', 'completed_at')
  return { rs_id(pkey), h[1] or '', h[2] or '', h[3] or '', h[4] or '{}', h[5] or '0',
    h[6] or '0', h[7] or '' }
end

-- The raw fields of a task record: id, state, version, pid, ttl, {resumes}.
local function rs_task_raw(pkey)
  local h = redis.call('HMGET', pkey, 't_state', 't_version', 't_pid', 't_ttl')
  return { rs_id(pkey), h[1] or '', h[2] or '0', h[3] or '', h[4] or '',
    redis.call('SMEMBERS', rs_key(pkey, 'rr')) }
end

-- preload: the raw records of the other promises of pkey's family with its branch tag.
local function rs_preload(pkey)
  local branch = redis.call('HGET', pkey, 'rs_branch')
  local out = {}
  if not branch or branch == '' then
    return out
  end
  for _, member in ipairs(redis.call('SMEMBERS', rs_tag(pkey) .. ':rb:' .. branch)) do
    if member ~= pkey and redis.call('EXISTS', member) == 1 then
      out[#out + 1] = rs_raw(member)
    end
  end
  return out
end

-- Settle pending promise pkey: redpromise's settle() (index, counters, completion
-- message) with settled_at as completed_at, the protocol value when given, and its
-- promise timeout dropped.
local function rs_settle(pkey, state, rs_value, value, settled_at)
  local h = redis.call('HMGET', pkey, 'group', 'created_at')
  local id = rs_id(pkey)
  local tag = rs_tag(pkey)
  local group = h[1] or ''
  settle(pkey, tag .. ':s:' .. id, tag .. ':q:' .. group, tag .. ':timeouts',
    tag .. ':delayed', id, group, state, value, '0', tag .. ':c', '', '', ARGV[2],
    { tag .. ':i:pending', tag .. ':i:' .. state, tag .. ':n', h[2] }, settled_at)
  if rs_value then
    redis.call('HSET', pkey, 'rs_value', rs_value)
  end
  redis.call('ZREM', tag .. ':rpt', id)
end

-- The task of a settled promise is fulfilled: lease, timeout and resumes gone, and its
-- callbacks on other promises dropped.
local function rs_fulfill(pkey)
  local t = redis.call('HGET', pkey, 't_state')
  if not t or t == 'fulfilled' then
    return
  end
  redis.call('HSET', pkey, 't_state', 'fulfilled')
  redis.call('HDEL', pkey, 't_pid', 't_ttl', 't_tt')
  redis.call('DEL', rs_key(pkey, 'rr'))
  redis.call('ZREM', rs_tag(pkey) .. ':rtt', rs_id(pkey))
  local awaits = rs_key(pkey, 'ra')
  for _, awaited in ipairs(redis.call('SMEMBERS', awaits)) do
    redis.call('SREM', rs_key(awaited, 'rc'), pkey)
  end
  redis.call('DEL', awaits)
end

-- The awaiters of a settled promise: a suspended one is resumed (pending, a retry
-- timeout, an execute message), any other live one buffers the resume.
local function rs_callbacks(pkey, now)
  local rc = rs_key(pkey, 'rc')
  local id = rs_id(pkey)
  for _, awaiter in ipairs(redis.call('SMEMBERS', rc)) do
    local t = redis.call('HMGET', awaiter, 't_state', 't_version', 'rs_target')
    local resumes = rs_key(awaiter, 'rr')
    if t[1] == 'suspended' then
      redis.call('HSET', awaiter, 't_state', 'pending', 't_tt', '0')
      redis.call('DEL', resumes)
      redis.call('SADD', resumes, id)
      redis.call('ZADD', rs_tag(awaiter) .. ':rtt', int_text(now + RS_RETRY_MS),
        rs_id(awaiter))
      rs_send(awaiter, t[3] or '', 'e', t[2] or '0')
    elseif t[1] == 'pending' or t[1] == 'acquired' or t[1] == 'halted' then
      redis.call('SADD', resumes, id)
    end
    redis.call('SREM', rs_key(awaiter, 'ra'), pkey)
  end
  redis.call('DEL', rc)
end

-- The listeners of a settled promise get an unblock message, once.
local function rs_listeners(pkey)
  local rl = rs_key(pkey, 'rl')
  for _, address in ipairs(redis.call('SMEMBERS', rl)) do
    rs_send(pkey, address, 'u', '0')
  end
  redis.call('DEL', rl)
end

local function rs_trigger(pkey, now)
  rs_fulfill(pkey)
  rs_callbacks(pkey, now)
  rs_listeners(pkey)
end

local function rs_timeout_state(pkey)
  if redis.call('HGET', pkey, 'rs_timer') == '1' then
    return 'resolved', ARGV[5]
  end
  return 'rejected_timedout', ARGV[4]
end

-- The eager timeout: a pending promise past its timeoutAt settles (as of timeoutAt)
-- before the request's own transition looks at it.
local function rs_eager(pkey, now)
  local h = redis.call('HMGET', pkey, 'state', 'timeout_at')
  if h[1] ~= 'pending' or now < tonumber(h[2]) then
    return
  end
  local state, value = rs_timeout_state(pkey)
  rs_settle(pkey, state, nil, value, tonumber(h[2]))
  rs_trigger(pkey, now)
end

-- Whether a pending record is past its timeout (the reference's projection).
local function rs_logically_pending(pkey, now)
  local h = redis.call('HMGET', pkey, 'state', 'timeout_at')
  return h[1] == 'pending' and now < tonumber(h[2])
end

-- The fence of every request made under an acquired task: nil when pkey's task is
-- acquired at exactly `version` and its promise is pending and not past its timeout;
-- otherwise why not: 404 (no task), 'state' (not acquired, or its promise settled or
-- timed out), 'version' (acquired at another version). Second result: the HMGET of
-- t_state, t_version and the extra fields asked for, in that order.
local function rs_unheld(pkey, now, version, ...)
  local t = redis.call('HMGET', pkey, 't_state', 't_version', ...)
  if not t[1] then
    return 404, t
  end
  if t[1] ~= 'acquired' or not rs_logically_pending(pkey, now) then
    return 'state', t
  end
  if tonumber(t[2]) ~= tonumber(version) then
    return 'version', t
  end
  return nil, t
end
