--[[
reconcile: re-dispatch a pending promise whose dispatch vanished.
  A stream entry can disappear behind the promise's back: an operator trim, a failover
  that lost the tail of the stream, a consumer deleted with entries pending. The hash
  is authoritative; this puts a fresh entry in the stream when the old one is gone.

  KEYS[1] promise hash      {ns:k}:p:<id>
  KEYS[2] target stream     {ns:k}:q:<group>
  KEYS[3] delayed zset      {ns:k}:delayed

  ARGV[1] id
  ARGV[2] group
  ARGV[3] the group's last-delivered id (from XINFO GROUPS), '' if unknown

  Returns
    { 1 }        re-dispatched (new entry written)
    { 0 }        healthy: in the stream (pending or not yet delivered), or waiting in delayed
    { -1 }       no such promise
    { -2, state } promise no longer pending (its completed state)
    { -5 }       the promise targets another group (or ARGV[2] is '')
  Fence rule: includes/fenced_read.lua for the group only (no execution, so no version);
  a promise whose entry is still live is never dispatched twice.
  Replay: a resend finds the entry the first run wrote, newer than ARGV[3] (read before
  that run), so it answers { 0 } and writes nothing.
]]
--- @include fenced_read
local function older_or_equal(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if not ams or not bms then
    return false
  end
  if tonumber(ams) ~= tonumber(bms) then
    return tonumber(ams) < tonumber(bms)
  end
  return tonumber(aseq) <= tonumber(bseq)
end
local refused, entry = fenced_read(KEYS[1], ARGV[2], nil, 'entry')
if refused then
  return refused
end
entry = entry or ''
if entry == '' then
  if redis.call('ZSCORE', KEYS[3], ARGV[2] .. '|' .. ARGV[1]) then
    return { 0 }
  end
else
  local found = redis.call('XRANGE', KEYS[2], entry, entry)
  if #found > 0 then
    local p = redis.call('XPENDING', KEYS[2], ARGV[2], entry, entry, 1)
    if #p > 0 or ARGV[3] == '' or not older_or_equal(entry, ARGV[3]) then
      return { 0 }
    end
    -- Delivered once, no longer pending, yet the promise is pending: stranded.
    redis.call('XDEL', KEYS[2], entry)
  end
end
local new = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', new, 'deliveries', 0)
return { 1 }
