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

Batched receive (see :mod:`~chanlite.layers.redis_batch`): the one reader
of a process-specific queue ``a!`` pops up to N items at once and serves
them from a local buffer. The items it holds still count against the
queue's capacity: ``<prefix>:h:<queue>`` ("held") is
``"<count>|<expires of the oldest>"`` of the live items in that buffer, as
last reported by the reader (set by ``POP_BATCH``, corrected by the reader
before its own sends and statistics). Pushes to a ``!`` queue refuse at
``capacity - held`` and statistics add it, so a stale value can only make
a send refuse early, never let a queue exceed its capacity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["Script", "PUSH", "PUSH_MANY", "PUSH_GROUP", "POP", "POP_BATCH", "QUEUE_STATS",
           "PENDING", "GROUP_ADD", "GROUP_DISCARD", "GROUP_MEMBERS"]


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

# The count of live items a batched reader holds for a ``!`` queue (0 if none).
_HELD = """
local function held(key)
  local value = redis.call('GET', key)
  if not value then return 0 end
  return tonumber(string.match(value, '^[^|]+')) or 0
end
"""

#: KEYS: queue list, full-count hash, [held key: ``!`` queues only].
#: ARGV: item, now, capacity, key ttl, queue name, full-hash ttl.
#: Returns 1 if queued, 0 if refused as full. Pushing first and undoing
#: when over capacity makes the common case two calls (RPUSH, EXPIRE).
PUSH = Script("push", _DROP_EXPIRED + _HELD + """
local key, capacity = KEYS[1], tonumber(ARGV[3])
if KEYS[3] then capacity = capacity - held(KEYS[3]) end
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

# Push one message to several queues: KEYS[k0..] are the queue lists,
# ARGV[a0..]: data, now, key ttl, full-hash ttl, expires, length of the key
# prefix, held-key prefix, then per queue: capacity, member count, that
# many channel names (empty when it is the queue name). Each queue takes
# as many members as it has room for, in order (one RPUSH); the rest are
# skipped and counted in the full hash (by queue name, the key without its
# prefix), exactly as pushing them one by one would. Returns the refusals.
# (Held keys are derived here rather than passed: fine outside Redis
# Cluster, which this layer does not support; it shards by itself.)
_PUSH_QUEUES = _DROP_EXPIRED + _HELD + """
local function push_queues(full, k0, a0)
  local data, now, ttl = ARGV[a0], tonumber(ARGV[a0 + 1]), ARGV[a0 + 2]
  local head, skip, hprefix = ARGV[a0 + 4] .. '|', tonumber(ARGV[a0 + 5]) + 1, ARGV[a0 + 6]
  local refused, a = 0, a0 + 7
  for i = k0, #KEYS do
    local key = KEYS[i]
    local capacity, count = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    if string.byte(key, -1) == 33 then  -- '!': what its reader holds counts too
      capacity = capacity - held(hprefix .. string.sub(key, skip))
    end
    local items = {}
    for k = 1, count do items[k] = head .. ARGV[a + 1 + k] .. '|' .. data end
    -- Push first and undo when over capacity: the common case is one call.
    local n = 0
    for j = 1, count, 1000 do
      n = redis.call('RPUSH', key, unpack(items, j, math.min(j + 999, count)))
    end
    if n > capacity then
      redis.call('RPOP', key, count)
      n = drop_expired(key, n - count, now)
      local fit = math.max(0, math.min(capacity - n, count))
      for j = 1, fit, 1000 do redis.call('RPUSH', key, unpack(items, j, math.min(j + 999, fit))) end
      if fit > 0 then redis.call('EXPIRE', key, ttl) end
      if fit < count then
        redis.call('HINCRBY', full, string.sub(key, skip), count - fit)
        refused = refused + count - fit
      end
    else
      redis.call('EXPIRE', key, ttl)
    end
    a = a + 2 + count
  end
  if refused > 0 then redis.call('EXPIRE', full, ARGV[a0 + 3]) end
  return refused
end
"""

#: KEYS: full-count hash, then each queue list once (members grouped by
#: queue: the members of one process share its ``a!`` queue). ARGV: as
#: ``push_queues`` above. Returns the number of refusals.
PUSH_MANY = Script("push_many", _PUSH_QUEUES + """
return push_queues(KEYS[1], 2, 1)
""")

# A group's version (``<prefix>:v:<group>``) changes whenever its members
# or their order may have: a sender that cached the members of a version
# (and the queues, capacities and hosts they map to) sends to the group in
# ONE round trip (``PUSH_GROUP``) until it changes. Time plus a counter, so
# a version never repeats, not even after the key expired or was flushed.
_BUMP = """
local function bump(vkey, ttl)
  local t = redis.call('TIME')
  local old = redis.call('GET', vkey) or ''
  local n = (tonumber(string.match(old, '[^.]+$') or '') or 0) + 1
  local version = t[1] .. '.' .. t[2] .. '.' .. n
  redis.call('SET', vkey, version, 'EX', ttl)
  return version
end
"""

#: KEYS: order zset, time zset, version, full-count hash, then queue lists
#: (the cached plan). ARGV: added_after, cached version, then as
#: ``push_queues``. Returns -1 (nothing sent: fetch the members again) if
#: the version changed or a member has expired, else the refusals.
PUSH_GROUP = Script("push_group", _PUSH_QUEUES + """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
if #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1) > 0 then return -1 end
return push_queues(KEYS[4], 5, 3)
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

#: KEYS: queue list, full-count hash, [held key: ``!`` queues only].
#: ARGV: now, queue name. Returns {pending (held items included), expires
#: of the oldest pending or "", full count}; held items are older than
#: any still in the list (they were popped first).
QUEUE_STATS = Script("queue_stats", _DROP_EXPIRED + """
local n = drop_expired(KEYS[1], redis.call('LLEN', KEYS[1]), tonumber(ARGV[1]))
local oldest = ''
if n > 0 then oldest = string.match(redis.call('LINDEX', KEYS[1], 0), '^[^|]+') end
if KEYS[3] then
  local value = redis.call('GET', KEYS[3])
  if value then
    local count, first = string.match(value, '^([^|]+)|(.*)$')
    count = tonumber(count) or 0
    if count > 0 then n, oldest = n + count, first end
  end
end
return {n, oldest, tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')}
""")

#: KEYS: queue list, held key. ARGV: now, most items to pop, key ttl.
#: Pops up to N items (``LPOP key count``, Redis >= 6.2), drops the expired
#: ones and records all live ones but the first (which the reader serves at
#: once) as held. Items are sorted by expiry, so only the head needs
#: checking: once one is live, so are the rest. Returns {the lengths of the
#: live items joined by spaces, the items concatenated}: two strings parse
#: far faster in the client than an array of N (redis-py parses arrays
#: element by element). Malformed items are returned too: the client logs
#: and drops them.
POP_BATCH = Script("pop_batch", """
local items = redis.call('LPOP', KEYS[1], ARGV[2])
if not items then
  redis.call('DEL', KEYS[2])
  return {'', ''}
end
local now, first = tonumber(ARGV[1]), #items + 1
for i = 1, #items do
  local expires = tonumber(string.match(items[i], '^[^|]+') or '')
  if expires == nil or expires > now then
    first = i
    break
  end
end
local live, lengths, n = {}, {}, 0
for i = first, #items do
  n = n + 1
  live[n] = items[i]
  lengths[n] = #items[i]
end
if n > 1 then
  local oldest = string.match(live[2], '^[^|]+') or ARGV[1]
  redis.call('SET', KEYS[2], (n - 1) .. '|' .. oldest, 'EX', ARGV[3])
else
  redis.call('DEL', KEYS[2])
end
return {table.concat(lengths, ' '), table.concat(live)}
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

#: KEYS: order zset, time zset, version. ARGV: channel, now, ttl.
GROUP_ADD = Script("group_add", _BUMP + """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local seq = 1
if last[2] then seq = tonumber(last[2]) + 1 end
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
bump(KEYS[3], ARGV[3])
return seq
""")

#: KEYS: order zset, time zset, version. ARGV: channel, ttl.
GROUP_DISCARD = Script("group_discard", _BUMP + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then bump(KEYS[3], ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
""")

#: KEYS: order zset, time zset, version. ARGV: added_after, ttl. Removes
#: members added at or before ``added_after``; returns the version, then the
#: others in join order, joined by spaces into one string (channel names
#: hold none; one bulk reply is far cheaper for the client to parse than an
#: array of 100 members).
GROUP_MEMBERS = Script("group_members", _BUMP + """
local version = redis.call('GET', KEYS[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
  for i = 1, #old, 1000 do
    redis.call('ZREM', KEYS[1], unpack(old, i, math.min(i + 999, #old)))
  end
  version = bump(KEYS[3], ARGV[2])
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return version
  end
end
if not version then version = bump(KEYS[3], ARGV[2]) end
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if #members == 0 then return version end
return version .. ' ' .. table.concat(members, ' ')
""")
