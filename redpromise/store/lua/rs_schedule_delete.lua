--[[
rs_schedule_delete: remove a Resonate protocol schedule (schedule.delete) and its entry in
  the due zset, so no replica fires it again.

  KEYS[1] schedule hash     {ns:k}:rs:<id>
  KEYS[2] due zset          {ns:k}:rst

  ARGV[1] schedule id

  Returns
    { 1 }        deleted
    { -1 }       no such schedule (never created, or already deleted)
  Fence rule: none. A replica that read the schedule as due before the delete may still
  create that tick's promise; its advance then answers { -1 } and re-adds nothing.
  Replay: a resend answers { -1 }.
]]
if redis.call('DEL', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return { -1 }
end
redis.call('ZREM', KEYS[2], ARGV[1])
return { 1 }
