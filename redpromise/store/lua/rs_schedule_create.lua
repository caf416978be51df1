--[[
rs_schedule_create: store a Resonate protocol schedule (schedule.create), unless one with
  the same id exists: then answer that one, unchanged (create is idempotent by id).

  KEYS[1] schedule hash     {ns:k}:rs:<id>       (k = partition of the schedule id)
  KEYS[2] due zset          {ns:k}:rst           (member id, score next_run_at)

  ARGV[1] schedule id
  ARGV[2] next_run_at       ms, computed by the caller from the cron (core/cron.py)
  ARGV[3..] field, value pairs of the new hash (cron, promise_id, promise_timeout,
          promise_param, promise_tags, created_at; next_run_at is added here)

  Returns
    { 1 }                   created; the zset holds id at next_run_at
    { 0, f1, v1, ... }      an earlier create made it: its hash (HGETALL), untouched
  Fence rule: none; the existence check and the writes are one atomic step, so two
  concurrent creates of one id store exactly one schedule.
  Replay: a resend finds the hash and answers { 0, ... } with what the first call stored.
]]
local existing = redis.call('HGETALL', KEYS[1])
if #existing > 0 then
  return { 0, unpack(existing) }
end
local pairs_ = {}
for i = 3, #ARGV do
  pairs_[#pairs_ + 1] = ARGV[i]
end
pairs_[#pairs_ + 1] = 'next_run_at'
pairs_[#pairs_ + 1] = ARGV[2]
redis.call('HSET', KEYS[1], unpack(pairs_))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return { 1 }
