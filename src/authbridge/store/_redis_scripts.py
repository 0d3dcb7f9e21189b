"""The Lua scripts of the Redis backend: each race is decided by one script, atomically.

Times are the caller's logical POSIX seconds, passed as the shortest decimal
text that reads back as the same double (Python's ``repr``); Lua's
``tonumber`` reads them exactly, and a stored time is returned as the text it
was stored as (a Lua number would be rounded to 14 digits on the way out).
Each script touches only the key it is given (``KEYS[1]``).

A one-time value is stored as ``<expires_at>|<value bytes>``; a rate-limit
window as a hash ``{c: count, e: window end}``; a replay record as
``<expires_at>``. The relative Redis TTL set on each key only collects
garbage: it is longer than the logical life (see
[RedisEphemeral][authbridge.store.RedisEphemeral]).
"""

from __future__ import annotations

TAKE = """
local stored = redis.call('GET', KEYS[1])
if not stored then
  return false
end
local bar = string.find(stored, '|', 1, true)
if tonumber(string.sub(stored, 1, bar - 1)) <= tonumber(ARGV[1]) then
  return false
end
redis.call('DEL', KEYS[1])
return string.sub(stored, bar + 1)
"""
"""Take a one-time value: ARGV = now. The value, or nil when absent or expired
(an expired value is left for its TTL, as the SQL backend leaves it for ``purge``)."""

HIT = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'c', 'e')
local count
local ends = state[2]
if ends and tonumber(ends) > now then
  count = tonumber(state[1]) + cost
  if count < 0 then count = 0 end
  if count > 9007199254740992 then count = 9007199254740992 end
  redis.call('HSET', KEYS[1], 'c', string.format('%d', count))
else
  count = cost
  if count < 0 then count = 0 end
  ends = ARGV[3]
  redis.call('HSET', KEYS[1], 'c', string.format('%d', count), 'e', ends)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {count, ends}
"""
"""Count in a fixed window: ARGV = now, cost, the end of a new window, its TTL (ms).
Returns {count after the hit, the window's end as stored}. The count stays between 0
and 2**53 (exact in a Lua double; the caller refuses a ``|cost|`` above 2**53)."""

FIRST_USE = """
local until_ = redis.call('GET', KEYS[1])
if until_ and tonumber(until_) > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""
"""Record a first use: ARGV = expires_at, now, TTL (ms). 1 for the first use, else 0
(a record expired at ``now`` counts as absent and is replaced)."""
