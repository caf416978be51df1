-- acquire_entry(): the one definition of acquiring a delivered stream entry, shared by
-- acquire.lua (one entry, delivered by XREADGROUP or XAUTOCLAIM) and take.lua (every entry
-- its own XREADGROUP delivered). Needs now.lua, text.lua, settle.lua and dead.lua.
--   c: what is the same for every entry of a call: the partition's keys (stream, dead,
--      timeouts, delayed, pending, rejected, counts) and group, consumer,
--      max_deliveries (number), poison, retention (text), channel, token, dead_max (text),
--      dead_age (number), publish; see acquire.lua's ARGV
--   pkey, skey: the promise's hash and steps hash; id, entry: its id and the entry id
-- Returns acquire.lua's reply (see its header). An error reading the promise's hash (a
-- key of another type) comes back as the error table redis.pcall made, nothing written.
local function acquire_entry(c, pkey, skey, id, entry)
  local h = redis.pcall('HMGET', pkey, 'state', 'group', 'entry', 'deliveries', 'version',
    'func', 'args', 'attempt', 'timeout_at', 'retry', 'token', 'created_at')
  if h.err then
    return h
  end
  local code = 0
  if not h[1] then
    code = -1
  elseif h[1] ~= 'pending' then
    code = -2
  elseif h[2] ~= c.group then
    code = -5
  elseif h[3] ~= entry then
    code = -4
  end
  if code ~= 0 then
    redis.call('XACK', c.stream, c.group, entry)
    redis.call('XDEL', c.stream, entry)
    return { code }
  end
  local version = tonumber(h[5]) or 0
  -- Only an acquired execution can checkpoint, so before the first acquire there is none.
  local steps = {}
  if c.token ~= '' and h[11] == c.token then
    if version > 1 then
      steps = redis.call('HGETALL', skey)
    end
    return { 1, version, h[6], h[7], h[8], h[9], h[10], tonumber(h[4]), steps }
  end
  local deliveries = (tonumber(h[4]) or 0) + 1
  if deliveries > c.max_deliveries then
    redis.call('HSET', pkey, 'deliveries', int_text(deliveries))
    -- The record keeps the function and arguments (settle drops them from the hash), so
    -- an operator can requeue the work as a new promise (redpromise/_inspect.py).
    to_dead(c.dead, c.dead_max, c.dead_age, { 'id', id, 'group', c.group, 'entry', entry,
      'deliveries', int_text(deliveries), 'func', h[6] or '', 'args', h[7] or '' })
    local done = settle(pkey, skey, c.stream, c.timeouts, c.delayed, id, c.group, 'rejected',
      c.poison, c.retention, c.channel, '', entry, c.publish,
      { c.pending, c.rejected, c.counts, h[12] }, now_ms())
    -- As complete.lua: created_at as read, completed_at as settle stored it.
    return { -7, h[6], h[12], done }
  end
  version = version + 1
  redis.call('HSET', pkey, 'version', int_text(version), 'deliveries', int_text(deliveries),
    'owner', c.consumer, 'token', c.token)
  if version > 1 then
    steps = redis.call('HGETALL', skey)
  end
  return { 1, version, h[6], h[7], h[8], h[9], h[10], deliveries, steps }
end
