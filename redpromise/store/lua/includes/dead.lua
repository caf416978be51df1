-- to_dead(): append one record to a partition's dead stream and keep the stream bounded:
-- at most `max_entries` entries, none older than `max_age_ms` by the server clock (MINID
-- needs Redis >= 6.2). Needs now.lua. Trimming is exact, not `~`: dead records are rare,
-- so each write trims only the few entries that fell out of bounds, and a bound holds as
-- documented (`~` trims whole stream nodes of ~100 entries, or nothing).
--   dead: the dead stream key; fields: flat list of field, value
local function to_dead(dead, max_entries, max_age_ms, fields)
  redis.call('XADD', dead, 'MAXLEN', max_entries, '*', unpack(fields))
  local min_id = now_ms() - max_age_ms
  if min_id > 0 then
    redis.call('XTRIM', dead, 'MINID', min_id)
  end
end
