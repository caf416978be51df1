--[[
bury: move one stream entry redpromise can never acquire (no promise id, a promise key
  of another type) out of its group into the partition's dead stream, kept bounded.

  KEYS[1] target stream     {ns:k}:q:<group>
  KEYS[2] dead stream       {ns:k}:dead

  ARGV[1] group
  ARGV[2] stream entry id
  ARGV[3] reason (text, kept for the operator)
  ARGV[4] dead stream max entries
  ARGV[5] dead stream max age ms

  Returns
    { 1 }        recorded in the dead stream, acked and deleted
    { 0 }        the entry is no longer in the stream (buried already: a replay): only
                 acked, so no second dead record is written
  Fence rule: none; the entry carries no promise whose version could be checked.
]]
--- @include now
--- @include dead
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) == 0 then
  return { 0 }
end
to_dead(KEYS[2], ARGV[4], tonumber(ARGV[5]), { 'group', ARGV[1], 'entry', ARGV[2],
  'reason', ARGV[3] })
redis.call('XDEL', KEYS[1], ARGV[2])
return { 1 }
