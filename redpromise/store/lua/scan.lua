--[[
scan: read search candidates from some of one partition's state indexes at one instant
  (read-only). Reading every state's index in one script is what keeps a search with no
  state filter from missing a promise that moves from one index to another between two
  reads.

  KEYS[1..n] state indexes of one partition   {ns:k}:i:<state>

  ARGV[1] '1' = newest first (descending), '0' = oldest first
  ARGV[2] score (created_at) of the cursor, '' = no cursor
  ARGV[3] member of the cursor
  ARGV[4] lowest score wanted (inclusive; the caller folds the cursor's score in)
  ARGV[5] highest score wanted (inclusive; likewise)
  ARGV[6] at most how many members per index

  Returns
    { 1, rows_1, …, rows_n }  rows_i: flat { member, score, … } of KEYS[i] strictly after
                              the cursor in (score, member) order (members compared as
                              bytes, as the zset orders them), at most ARGV[6] of them
                              (fewer: KEYS[i] has no more)
  Fence rule: none; nothing is written.
]]
local desc = ARGV[1] == '1'
local cursor_score = tonumber(ARGV[2])
local cursor_member = ARGV[3]
local count = tonumber(ARGV[6])

-- Byte order, as the zset sorts members (Lua's < on strings follows the server's locale).
local function bytes_lt(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local function after(member, score)
  if not cursor_score or score ~= cursor_score then
    return true
  end
  if desc then
    return bytes_lt(member, cursor_member)
  end
  return bytes_lt(cursor_member, member)
end

local lists = {}
for i = 1, #KEYS do
  local rows = {}
  local offset = 0
  while true do
    local got
    if desc then
      got = redis.call('ZREVRANGEBYSCORE', KEYS[i], ARGV[5], ARGV[4], 'WITHSCORES', 'LIMIT',
        offset, count)
    else
      got = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[4], ARGV[5], 'WITHSCORES', 'LIMIT',
        offset, count)
    end
    for j = 1, #got, 2 do
      if #rows < 2 * count and after(got[j], tonumber(got[j + 1])) then
        rows[#rows + 1] = got[j]
        rows[#rows + 1] = got[j + 1]
      end
    end
    -- Only members tied with the cursor's score are skipped, so this loops once per
    -- `count` of those.
    if #rows >= 2 * count or #got < 2 * count then
      break
    end
    offset = offset + count
  end
  lists[i] = rows
end
return { 1, unpack(lists) }
