-- fenced_read(): the opening of every transition made on behalf of a pending promise's
-- execution or group (checkpoint, heartbeat, retry, reconcile): read the promise hash and
-- refuse unless the promise may still be written for the caller.
--   pkey: the promise hash
--   group: the caller's group, or nil (not checked)
--   version: the version of the caller's execution, or nil (not checked)
--   ...: more fields of the hash to read and hand back (e.g. 'entry')
-- Reads, in one HMGET: state, group, version and the fields of `...`.
-- Fence rule, checked in this order, before the caller writes anything:
--   { -1 }         no such promise (never created, or its retention ended)
--   { -2, state }  the promise is no longer pending (its completed state)
--   { -5 }         `group` given, and the promise targets another group, or `group` is
--                  '' (a latent promise belongs to no group: no group's work touches it)
--   { -3 }         `version` given, and it is not the stored version: a newer execution
--                  owns the promise. A promise never acquired has no version field and
--                  is at version 0 (create.lua writes no defaults)
-- Returns the refusal, or nil followed by the values of `...` in order (false for a
-- missing field). Writes nothing, sets nothing.
local function fenced_read(pkey, group, version, ...)
  local h = redis.call('HMGET', pkey, 'state', 'group', 'version', ...)
  if not h[1] then
    return { -1 }
  end
  if h[1] ~= 'pending' then
    return { -2, h[1] }
  end
  if group and (h[2] ~= group or group == '') then
    return { -5 }
  end
  if version and (h[3] or '0') ~= version then
    return { -3 }
  end
  return nil, unpack(h, 4, 3 + select('#', ...))
end
