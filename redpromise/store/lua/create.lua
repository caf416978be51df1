--[[
create: create a promise if absent and dispatch it to its target group, atomically.
  The SET NX of the design: the same id twice is one promise and at most one dispatch.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] target stream     {ns:k}:q:<group>   (unused when group is '')
  KEYS[3] timeouts zset     {ns:k}:timeouts
  KEYS[4] pending index     {ns:k}:i:pending  (member <group>|<id>, score created_at)
  KEYS[5] counters hash     {ns:k}:n          (<state>|<group> -> index entries)

  ARGV[1] id
  ARGV[2] function name
  ARGV[3] args (msgpack, opaque here)
  ARGV[4] target group ('' = latent promise: nothing is dispatched)
  ARGV[5] timeout in ms, relative to the server clock
  ARGV[6] tags (msgpack, opaque)
  ARGV[7] retry policy (msgpack, opaque, '' = the worker's default)

  Returns
    { 1, timeout_at }              created (and dispatched when group ~= '')
    { 0, state, timeout_at }       already existed: nothing written
  created_at is the server clock: the stream entry id's milliseconds when one is added
  (see below), else TIME.
  Fence rule: none; creation is keyed by id only.
  Replay: a resend finds the hash and answers { 0, 'pending', timeout_at }, writing nothing
  (no second entry); callers treat "already existed" as success for the same id.
]]
--- @include now
--- @include text
local state = redis.call('HGET', KEYS[1], 'state')
if state then
  return { 0, state, redis.call('HGET', KEYS[1], 'timeout_at') }
end
local timeout_ms = tonumber(ARGV[5])
if not timeout_ms then
  return redis.error_reply('ERR redpromise create: timeout is not a number')
end
local now, created
local entry = ''
if ARGV[4] ~= '' then
  entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
  -- The entry id's milliseconds are the server clock XADD read, so no TIME call. Ids only
  -- grow within a stream: if the clock went back (or a failover brought ids from a master
  -- whose clock ran ahead), they stay at the stream's last id until the clock catches up,
  -- so created_at (and timeout_at) may lead TIME by that much, never lag it.
  created = string.match(entry, '^%d+')
  now = tonumber(created)
else
  now = now_ms()
  created = int_text(now)
end
local timeout_at = now + timeout_ms
-- Numbers go to Redis as text made once (see text.lua), constants as literal text.
local timeout_text = int_text(timeout_at)
-- Only fields with a value are written: a missing version, attempt or deliveries reads
-- as 0, a missing entry, tags or retry as '' (every reader treats them so). A small hash
-- is a listpack that every HMGET and HSET scans field by field, so each field left out
-- makes every later transition of the promise cheaper, and the record smaller.
local fields = { 'state', 'pending', 'func', ARGV[2], 'args', ARGV[3], 'group', ARGV[4],
  'created_at', created, 'timeout_at', timeout_text }
if entry ~= '' then
  fields[#fields + 1] = 'entry'
  fields[#fields + 1] = entry
end
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'tags'
  fields[#fields + 1] = ARGV[6]
end
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'retry'
  fields[#fields + 1] = ARGV[7]
end
redis.call('HSET', KEYS[1], unpack(fields))
local member = ARGV[4] .. '|' .. ARGV[1]
redis.call('ZADD', KEYS[3], timeout_text, member)
-- A counter moves only with its index entry, so counts always equal the index's members.
if redis.call('ZADD', KEYS[4], created, member) == 1 then
  redis.call('HINCRBY', KEYS[5], 'pending|' .. ARGV[4], '1')
end
return { 1, timeout_at }
