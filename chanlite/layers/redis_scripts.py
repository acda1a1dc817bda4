"""Lua scripts of the Redis channel layer (server-side, hence atomic).

Why scripts: the capacity check and the push must be one atomic step (two
senders must not both see "one slot left"), a non-blocking receive over
several queues must pop from the first non-empty one while dropping expired
heads, and a group send should cost one round trip per host whatever the
number of members. Each script runs by ``EVALSHA`` (the body is sent once
per server, again only after ``NOSCRIPT``, e.g. after a Redis restart).

Queue items are ``b"<expires>|<channel>|<data>"``: ``expires`` is the
``repr`` of a float (``tonumber`` in Lua and ``float`` in Python read it back
exactly), ``channel`` is empty when it equals the queue name (only
process-specific channels ``a!x`` spell it out), and ``data`` is the msgpack
message. Every message of a layer gets the same ``expiry`` and time does not
go back, so each list is sorted by ``expires`` and expired items are always
at its head.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["Script", "PUSH", "PUSH_MANY", "POP", "QUEUE_STATS", "PENDING", "GROUP_ADD",
           "GROUP_DISCARD", "GROUP_MEMBERS"]


@dataclass(frozen=True)
class Script:
    """A Lua script body and its SHA1 (what ``EVALSHA`` names)."""

    name: str
    body: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.body.encode()).hexdigest())


# Drop expired items from the head of KEY while it holds N items; return the
# new length. Items are sorted by expiry, so this stops at the first live one.
_DROP_EXPIRED = """
local function drop_expired(key, n, now)
  while n > 0 do
    local head = redis.call('LINDEX', key, 0)
    local expires = tonumber(string.match(head, '^[^|]+') or '')
    if expires == nil then
      redis.log(redis.LOG_WARNING, 'chanlite: dropped a malformed item from ' .. key)
    elseif expires > now then return n end
    redis.call('LPOP', key)
    n = n - 1
  end
  return n
end
"""

#: KEYS: queue list, full-count hash. ARGV: item, now, capacity, key ttl,
#: queue name, full-hash ttl. Returns 1 if queued, 0 if refused as full.
#: Pushing first and undoing when over capacity makes the common case two
#: calls (RPUSH, EXPIRE) instead of three.
PUSH = Script("push", _DROP_EXPIRED + """
local key, capacity = KEYS[1], tonumber(ARGV[3])
local n = redis.call('RPUSH', key, ARGV[1])
if n > capacity then
  redis.call('RPOP', key)
  n = drop_expired(key, n - 1, tonumber(ARGV[2]))
  if n >= capacity then
    redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    return 0
  end
  redis.call('RPUSH', key, ARGV[1])
end
redis.call('EXPIRE', key, ARGV[4])
return 1
""")

#: KEYS: full-count hash, then one queue list per member on this host.
#: ARGV: data, now, key ttl, full-hash ttl, expires, length of the key
#: prefix, then per member: capacity, channel name (empty when it is the
#: queue name). Full members are skipped and counted (by queue name, the
#: key without its prefix). Returns the number of refusals.
PUSH_MANY = Script("push_many", _DROP_EXPIRED + """
local data, now, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local head, skip = ARGV[5] .. '|', tonumber(ARGV[6]) + 1
local refused = 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local a = 7 + (i - 2) * 2
  local capacity = tonumber(ARGV[a])
  local item = head .. ARGV[a + 1] .. '|' .. data
  local queued = true
  local n = redis.call('RPUSH', key, item)
  if n > capacity then
    redis.call('RPOP', key)
    n = drop_expired(key, n - 1, now)
    if n >= capacity then
      redis.call('HINCRBY', KEYS[1], string.sub(key, skip), 1)
      refused = refused + 1
      queued = false
    else
      redis.call('RPUSH', key, item)
    end
  end
  if queued then redis.call('EXPIRE', key, ttl) end
end
if refused > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return refused
""")

#: KEYS: queue lists in the order to try. ARGV: now. Pops the first live
#: item of the first non-empty queue, dropping expired ones on the way.
#: Returns {index of the queue (1-based), item} or false.
POP = Script("pop", """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  while true do
    local item = redis.call('LPOP', KEYS[i])
    if not item then break end
    -- a malformed item is returned too: the client logs and drops it
    local expires = tonumber(string.match(item, '^[^|]+') or '')
    if expires == nil or expires > now then return {i, item} end
  end
end
return false
""")

#: KEYS: queue list, full-count hash. ARGV: now, queue name.
#: Returns {pending, expires of the oldest pending or "", full count}.
QUEUE_STATS = Script("queue_stats", _DROP_EXPIRED + """
local n = drop_expired(KEYS[1], redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]))
local oldest = ''
if n > 0 then oldest = string.match(redis.call('LINDEX', KEYS[1], 0), '^[^|]+') end
return {n, oldest, tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')}
""")

#: KEYS: queue lists (a SCAN batch). ARGV: now. Returns the live items in all.
PENDING = Script("pending", _DROP_EXPIRED + """
local now, total = tonumber(ARGV[1]), 0
for i = 1, #KEYS do
  total = total + drop_expired(KEYS[i], redis.call('LLEN', KEYS[i]), now)
end
return total
""")

# Groups: two sorted sets with the same members. ``g`` is scored by a
# sequence number (the previous maximum + 1), which keeps members in the
# order they (last) joined even when the clock does not move (a fake clock
# in tests); ``t`` is scored by add time, so expired members are found with
# one range query instead of a walk over all members on every group send.

#: KEYS: order zset, time zset. ARGV: channel, now, ttl.
GROUP_ADD = Script("group_add", """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local seq = 1
if last[2] then seq = tonumber(last[2]) + 1 end
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
""")

#: KEYS: order zset, time zset. ARGV: channel.
GROUP_DISCARD = Script("group_discard", """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
""")

#: KEYS: order zset, time zset. ARGV: added_after. Removes members added at
#: or before ``added_after``; returns the others in join order.
GROUP_MEMBERS = Script("group_members", """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
  for i = 1, #old, 1000 do
    redis.call('ZREM', KEYS[1], unpack(old, i, math.min(i + 999, #old)))
  end
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return {}
  end
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
""")
