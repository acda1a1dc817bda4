"""Groups of the Redis channel layer: membership, and sending to members.

Why a group send is one round trip: fan-out is what groups are for (a chat
room, a live dashboard), and a send used to cost two round trips — fetch
the members, then push to them — plus per-member work in Python. Members
change rarely compared to sends, so a sender caches, per group, the
members it last fetched *with the group's version* (``<prefix>:v:<group>``,
changed by every add, discard and expiry of a member) already mapped to
queues, capacities and hosts. With one host, ``PUSH_GROUP`` checks the
version and that no member has expired, and pushes, in one script; if
either changed it sends nothing and says so, and the members are fetched
again (two round trips, as before). With several hosts the members are
fetched every time (the version lives on the group's host, the queues on
theirs) and the push is one script per host.

Members are pushed grouped by queue: the members of one process share its
``a!`` queue, so a send to 100 of them is one ``RPUSH`` of 100 items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from . import redis_scripts as _scripts
from .names import check_group_name, queue_for_send

logger = logging.getLogger("chanlite.layers.redis")

#: Cached groups per layer object before the cache is cleared (bounds memory
#: in a process that sends to very many short-lived groups).
PLAN_CACHE_LIMIT = 4096


class Plan:
    """Members of a group mapped to the hosts and queues they live on.

    ``hosts``: host index -> (keys: the full-count hash then each queue
    list, args: per queue its capacity, member count and member names (empty
    when the name is the queue), queues: the queue names). ``members``: the
    member count; ``names``: queue -> member names, for outage logs.
    """

    __slots__ = ("hosts", "members", "names", "packed")

    def __init__(self, layer: Any, channels: list[str]) -> None:
        names: dict[str, list[str]] = {}
        for channel in channels:
            queue = queue_for_send(channel)
            queue_names = names.get(queue)
            if queue_names is None:
                queue_names = names[queue] = []
            queue_names.append("" if channel == queue else channel)
        hosts: dict[int, tuple[list[str], list[Any], list[str]]] = {}
        qprefix, capacities, ring = layer._qprefix, layer._capacity_cache, layer._ring
        for queue, queue_names in names.items():
            index = ring.index_for(queue)
            entry = hosts.get(index)
            if entry is None:
                entry = hosts[index] = ([layer._full_key], [], [])
            entry[0].append(qprefix + queue)
            entry[1].extend((capacities.get(queue) or layer.capacity_for(queue), len(queue_names)))
            entry[1].extend(queue_names)
            entry[2].append(queue)
        self.hosts, self.members, self.names = hosts, len(channels), names
        #: (argument count, RESP of the keys, RESP of the per-queue args) of
        #: this plan's PUSH_GROUP: packing ~4 arguments per member on every
        #: send was most of a group send's CPU. Built on first use.
        self.packed: tuple[int, bytes, bytes] | None = None


class GroupSendMixin:
    """Group storage and one-round-trip group sends; mixed into the layer."""

    # Provided by RedisChannelLayer / BaseChannelLayer.
    RedisUnavailable: type[ConnectionError]
    prefix: str
    group_expiry: float
    expiry: float
    clock: Any
    encode: Any
    _hosts: list[Any]
    _ring: Any
    _group_ttl: int
    _queue_ttl: int
    _full_ttl: int
    _qprefix: str
    _full_key: str
    _hprefix: str
    _reported: dict[str, Any]
    _held_fixes: Any
    _unreachable: dict[str, int]
    _out_of_memory: type[BaseException]
    _skips: Any

    def _init_groups(self) -> None:
        # redis-py is the optional ``redis`` extra and this module is imported
        # (by chanlite.layers.redis) without it; the layer calls this only
        # once it found redis-py, so these imports cannot fail here.
        from redis.exceptions import NoScriptError  # noqa: PLC0415 — optional extra

        from .redis_hosts import pack  # noqa: PLC0415 — imports redis-py

        self._no_script: type[Exception] = NoScriptError
        self._pack: Callable[[Sequence[Any]], bytes] = pack
        #: group -> (version, Plan) as last fetched by this layer object.
        self._group_plans: dict[str, tuple[bytes, Plan]] = {}

    def _group_host(self, group: str) -> Any:
        return self._hosts[self._ring.index_for("group:" + group)]

    def _group_keys(self, group: str) -> tuple[str, str, str]:
        return f"{self.prefix}:g:{group}", f"{self.prefix}:t:{group}", f"{self.prefix}:v:{group}"

    # membership -------------------------------------------------------------

    def _group_add(self, group: str, channel: str, now: float) -> None:
        self._group_host(group).run(
            _scripts.GROUP_ADD, self._group_keys(group), (channel, repr(now), self._group_ttl)
        )

    def _group_discard(self, group: str, channel: str) -> None:
        self._group_host(group).run(
            _scripts.GROUP_DISCARD, self._group_keys(group), (channel, self._group_ttl)
        )

    def _members_versioned(self, group: str, added_after: float) -> tuple[bytes, list[str]]:
        reply = self._group_host(group).run(
            _scripts.GROUP_MEMBERS, self._group_keys(group), (repr(added_after), self._group_ttl)
        )
        version, _, members = reply.partition(b" ")
        return version, members.decode().split() if members else []

    def _group_members(self, group: str, added_after: float) -> list[str]:
        return self._members_versioned(group, added_after)[1]

    # sending ----------------------------------------------------------------

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member; full members are skipped.

        Skipped members are counted (``channel_full_count``) and logged as a
        count, at most one line per 10 s per layer (never one per member).
        One round trip with one Redis host and unchanged members (see the
        module docstring), else one for the members and one per host.
        """
        check_group_name(group)
        data = self.encode(message)
        now = self.clock()
        expires, cutoff = now + self.expiry, now - self.group_expiry
        cached = self._group_plans.get(group) if len(self._hosts) == 1 else None
        skipped = None
        if cached is not None:
            plan = cached[1]
            skipped = self._push_group(group, cached, data, expires, cutoff, now)
        if skipped is None:
            version, members = self._members_versioned(group, cutoff)
            plan = Plan(self, members)
            if len(self._group_plans) >= PLAN_CACHE_LIMIT:
                self._group_plans.clear()
            self._group_plans[group] = (version, plan)
            skipped = self._push_plan(plan, data, expires, now) if members else 0
        if skipped:
            self._skips.note(skipped, f"group {group!r}, {skipped} of {plan.members}")

    def _push_many(self, channels: list[str], data: bytes, expires: float, now: float) -> int:
        """The base class's hook: push to ``channels``, one script per host."""
        return self._push_plan(Plan(self, channels), data, expires, now)

    def _push_args(self, data: bytes, expires: float, now: float) -> list[Any]:
        return [data, repr(now), self._queue_ttl, self._full_ttl,
                repr(expires), len(self._qprefix), self._hprefix]

    def _push_group(
        self, group: str, cached: tuple[bytes, Plan], data: bytes, expires: float,
        cutoff: float, now: float,
    ) -> int | None:
        """``PUSH_GROUP`` with the cached plan (one host); None if stale."""
        version, plan = cached
        if not plan.hosts:  # an empty group: still checks the version
            keys: list[str] = [self._full_key]
            args: list[Any] = []
            queues: list[str] = []
        else:
            keys, args, queues = plan.hosts[0]
        before = self._held_fixes(queues, now) if self._reported else []
        host = self._hosts[0]
        pack, no_script = self._pack, self._no_script
        if plan.packed is None:
            all_keys = [*self._group_keys(group), *keys]
            head = pack(("EVALSHA", _scripts.PUSH_GROUP.sha, len(all_keys), *all_keys))
            tail = pack(args)
            plan.packed = (3 + len(all_keys) + len(args),
                           head[head.index(b"\r\n") + 2:], tail[tail.index(b"\r\n") + 2:])
        count, head, tail = plan.packed
        middle = pack((repr(cutoff), version, *self._push_args(data, expires, now)))
        middle = middle[middle.index(b"\r\n") + 2:]
        command = b"*%d\r\n%b%b%b" % (count + 9, head, middle, tail)
        try:
            try:
                result = int(host.execute_packed(before, command))
            except no_script:  # nothing ran: load it and run again
                host.execute("SCRIPT", "LOAD", _scripts.PUSH_GROUP.body)
                result = int(host.execute_packed((), command))
        except (self._out_of_memory, self.RedisUnavailable) as exc:
            return self._push_failed(host, plan, queues, exc)
        if result < 0:
            del self._group_plans[group]
            return None
        return result

    def _push_plan(self, plan: Plan, data: bytes, expires: float, now: float) -> int:
        head = self._push_args(data, expires, now)
        skipped = 0
        for index, (keys, args, queues) in plan.hosts.items():
            host = self._hosts[index]
            before = self._held_fixes(queues, now) if self._reported else []
            try:
                skipped += int(host.run(_scripts.PUSH_MANY, keys, [*head, *args], before))
            except (self._out_of_memory, self.RedisUnavailable) as exc:
                skipped += self._push_failed(host, plan, queues, exc)
        return skipped

    def _push_failed(self, host: Any, plan: Plan, queues: list[str], exc: BaseException) -> int:
        """Members on ``host`` that a failed push skipped (logged and counted)."""
        missed = [name or queue for queue in queues for name in plan.names[queue]]
        if isinstance(exc, self._out_of_memory):
            # A full server: its members are skipped like full ones.
            logger.warning(
                "group send skipped %d member(s) on %s: Redis is out of memory (%s)",
                len(missed), host.label, exc,
            )
            return len(missed)
        # Like a full member, an unreachable one is skipped: the members on
        # healthy shards still get the message. Say who missed it (log) and
        # count it (delivery_statistics), but not as "full".
        self._unreachable[host.label] = self._unreachable.get(host.label, 0) + len(missed)
        logger.warning(
            "group send could not reach %d member(s) on %s: %s (%s)",
            len(missed), host.label, ", ".join(missed[:10])
            + (" ..." if len(missed) > 10 else ""), exc,
        )
        return 0
