--[[
rs_schedule_advance: after a due schedule's promise was created, move the schedule one
  run forward: last_run_at = the run just fired, next_run_at = the cron's next time after
  it (computed by the caller). One step per call even when several runs were missed, as
  the reference server advances one step per tick.

  KEYS[1] schedule hash     {ns:k}:rs:<id>
  KEYS[2] due zset          {ns:k}:rst

  ARGV[1] schedule id
  ARGV[2] the run fired     the next_run_at the caller read (decimal ms)
  ARGV[3] the next run      decimal ms

  Returns
    { 1 }        advanced
    { -1 }       no such schedule (deleted meanwhile); nothing written
    { -3 }       stale: next_run_at is no longer ARGV[2] (another replica advanced it)
  Fence rule: writes only while the stored next_run_at equals ARGV[2], so of any number
  of replicas firing the same run exactly one advances it; the others' promise.create
  calls were idempotent by promise id, so each run makes one promise.
  Replay: a resend of an applied call answers { -3 }.
]]
local current = redis.call('HGET', KEYS[1], 'next_run_at')
if not current then
  return { -1 }
end
if current ~= ARGV[2] then
  return { -3 }
end
redis.call('HSET', KEYS[1], 'last_run_at', ARGV[2], 'next_run_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return { 1 }
