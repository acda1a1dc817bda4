"""Redis channel layer: the same channels and groups, across several hosts.

Install the extra (``pip install chanlite[redis]``) and configure::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "chanlite.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://10.0.0.5:6379/0", "redis://10.0.0.6:6379/0"]},
        "ROUTING": "myproject.routing.channel_routing",
    }}

Only storage lives here; every rule (names, codec, capacity, expiry,
fairness, statistics shape) is :class:`~chanlite.layers.base.BaseChannelLayer`'s.

Storage, per ``prefix`` (all keys are ``<prefix>:<kind>:<name>``):

- ``<prefix>:q:<queue>`` — a list of ``"<expires>|<channel>|<msgpack>"``
  items, pushed by a Lua script that checks capacity atomically. The key's
  TTL (``expiry + ttl_margin`` real seconds, refreshed on every push) is a
  garbage-collection backstop: the *semantics* follow the per-item deadline
  and the layer's clock (a fake clock in tests), the TTL only guarantees
  that an idle deployment keeps nothing.
- ``<prefix>:g:<group>`` / ``<prefix>:t:<group>`` — members in join order
  (a sorted set) and their add times (another), TTL ``group_expiry +
  ttl_margin``, on the host chosen by the group name so every sender finds
  them; ``<prefix>:v:<group>``: their version (see
  :mod:`~chanlite.layers.redis_groups`).
- ``<prefix>:f:`` — per-host hash of "refused as full" counters.
- ``<prefix>:h:<queue>`` — for a process-specific queue ``a!``, how many
  live items its reader holds in its local buffer (batched receive, see
  :mod:`~chanlite.layers.redis_batch`); they still count against capacity.

Queues are spread over ``hosts`` by a consistent hash ring (see
:class:`~chanlite.layers.redis_hosts.HashRing`); ``a!x`` lives in queue
``a!`` so a reply pump receives all its channels from one host.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from typing import Any, cast

from . import redis_scripts as _scripts  # plain Lua text: no redis-py needed

# The blocking receive lives in its own module; OUTAGE_LOG_INTERVAL and
# _SelectPoller stay importable from here, where they used to be.
from ._redis_receive import (  # noqa: F401
    OUTAGE_LOG_INTERVAL,
    BlockingReceiveMixin,
    _SelectPoller,
)
from .base import MAX_DROPPED, BaseChannelLayer
from .redis_batch import BatchedReceiveMixin
from .redis_crypto import MessageCipher  # cryptography itself is imported on use
from .redis_groups import GroupSendMixin

__all__ = ["RedisChannelLayer", "RedisUnavailable"]

logger = logging.getLogger("chanlite.layers.redis")

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_OWN_KINDS = frozenset({"q", "g", "t", "f", "h", "v"})


class RedisUnavailable(ConnectionError):
    """A Redis host could not be reached or dropped the connection.

    A subclass of the built-in ``ConnectionError`` so generic handlers catch
    it; its text names the host. Raised by ``send``, ``send_group``, group
    and statistics calls and non-blocking ``receive``. A blocking
    ``receive`` does not raise it: it logs, reconnects with backoff and
    keeps waiting (what a worker or reply-pump loop needs).
    """


class RedisChannelLayer(
    GroupSendMixin, BatchedReceiveMixin, BlockingReceiveMixin, BaseChannelLayer
):
    """Channel layer storing queues and groups in one or more Redis servers.

    Parameters (besides the base ones: ``expiry``, ``group_expiry``,
    ``capacity``, ``channel_capacity``, ``max_message_size``, ``clock``):

    hosts: Redis URLs (``redis://[:password@]host:port/db``, ``rediss://``
        for TLS, ``unix://``) or ``(host, port)`` pairs; default the local
        server. Queues are spread over them by consistent hashing.
    prefix: namespace of every key; ``flush()`` and statistics touch only
        keys under it, so several projects can share a server.
    ttl_margin: real seconds keys outlive ``expiry``/``group_expiry`` before
        Redis deletes them as garbage (never shorter than the semantics).
    block_chunk: longest single server-side ``BLPOP`` of a receive waiting
        forever; bounds how long a silently dead connection goes unnoticed.
    socket_timeout / socket_connect_timeout: seconds before a silent server
        counts as unreachable.
    reconnect_backoff / reconnect_backoff_max: first and longest delay
        between reconnect attempts of a blocking receive (doubling).
    virtual_nodes: points per host on the hash ring.
    connection_options: extra keyword arguments for redis-py connections,
        e.g. ``{"ssl_ca_certs": "/etc/ssl/redis-ca.pem"}``.
    symmetric_encryption_keys: seal every message body (see
        :mod:`~chanlite.layers.redis_crypto`): the first key encrypts, all
        decrypt; a message no key opens is dropped with a log line.
    receive_batch: most messages a receive from a process-specific queue
        (``a!``, one reader: this process) takes from Redis in one round
        trip, serving the rest from a local buffer that still counts
        against capacity and honours expiry (see
        :mod:`~chanlite.layers.redis_batch`); 1 turns batching off. Shared
        channels are always popped one message at a time.

    One shard down (see docs/layers.md "Failures"): its channels raise
    :class:`RedisUnavailable` naming it, the others keep working, a group
    send still reaches the members on healthy shards and counts the rest in
    :meth:`delivery_statistics`; connections reopen by themselves.
    """

    RedisUnavailable = RedisUnavailable

    def __init__(
        self,
        hosts: Sequence[str | tuple[str, int]] | str | None = None,
        prefix: str = "chanlite",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Any = None,
        *,
        ttl_margin: float = 60,
        block_chunk: float = 5.0,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 5.0,
        reconnect_backoff: float = 0.05,
        reconnect_backoff_max: float = 2.0,
        virtual_nodes: int = 160,
        connection_options: dict[str, Any] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        receive_batch: int = 1000,
        **base: Any,
    ) -> None:
        super().__init__(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            **base,
        )
        # redis-py is the optional ``redis`` extra: this module must import
        # without it (its own imports need none), so that constructing the
        # layer is what fails, saying which extra to install.
        try:
            from redis.exceptions import (  # noqa: PLC0415 — optional extra
                OutOfMemoryError,
                ResponseError,
            )
            from redis.exceptions import (  # noqa: PLC0415 — optional extra
                TimeoutError as RedisTimeoutError,
            )

            from .redis_hosts import (  # noqa: PLC0415 — imports redis-py
                NETWORK_ERRORS,
                HashRing,
                Host,
                role_changed,
            )
        except ImportError as exc:  # redis-py missing
            raise ImportError(
                "chanlite.layers.redis.RedisChannelLayer needs redis-py: "
                f"pip install chanlite[redis] ({exc})"
            ) from exc
        if type(prefix) is not str or not prefix:
            raise ValueError(f"prefix must be a non-empty str, not {prefix!r}")
        for what, value in (
            ("ttl_margin", ttl_margin),
            ("block_chunk", block_chunk),
            ("socket_timeout", socket_timeout),
            ("socket_connect_timeout", socket_connect_timeout),
            ("reconnect_backoff", reconnect_backoff),
            ("reconnect_backoff_max", reconnect_backoff_max),
        ):
            if type(value) not in (int, float) or not value > 0:
                raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
        options = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "socket_keepalive": True,
            **(connection_options or {}),
        }
        self._hosts = self._make_hosts(hosts, options, Host)
        for host in self._hosts:
            host.client_name = "chanlite:" + re.sub(r"[^A-Za-z0-9._-]", "_", prefix)[:64]
        self._ring = HashRing([host.identity for host in self._hosts], virtual_nodes)
        self.hosts = [host.url for host in self._hosts]
        self._cipher = None
        if symmetric_encryption_keys is not None:
            self._cipher = MessageCipher(symmetric_encryption_keys)
        #: Process-local delivery counters (see :meth:`delivery_statistics`).
        self._unreachable: dict[str, int] = {}
        self._undecryptable = 0
        self.prefix = prefix
        self._qprefix = f"{prefix}:q:"
        self._full_key = f"{prefix}:f:"
        self._queue_ttl = math.ceil(self.expiry + ttl_margin)
        self._group_ttl = math.ceil(self.group_expiry + ttl_margin)
        self._full_ttl = max(self._queue_ttl, self._group_ttl)
        self._init_batching(prefix, receive_batch)
        self._init_groups()
        self._read_timeout: type[BaseException] = RedisTimeoutError
        self._out_of_memory: type[BaseException] = OutOfMemoryError
        self._response_error: type[BaseException] = ResponseError
        self._role_changed = role_changed
        self._network_errors = NETWORK_ERRORS
        self.block_chunk = float(block_chunk)
        self.grace = float(socket_timeout)
        self.reconnect_backoff = float(reconnect_backoff)
        self.reconnect_backoff_max = float(reconnect_backoff_max)

    def _make_hosts(self, hosts: Any, options: dict[str, Any], host_class: Any) -> list[Any]:
        """The shards (``Host`` objects); the Sentinel layer builds its own."""
        urls = self._urls(hosts)
        try:
            return [host_class(url, options, RedisUnavailable) for url in urls]
        except ValueError as exc:
            raise ValueError(f"invalid Redis host URL in {urls!r}: {exc}") from exc

    @staticmethod
    def _urls(hosts: Any) -> list[str]:
        if hosts is None:
            return ["redis://127.0.0.1:6379/0"]
        if isinstance(hosts, str):
            hosts = [hosts]
        urls = []
        for host in hosts:
            if isinstance(host, (tuple, list)) and len(host) == 2:
                host = f"redis://{host[0]}:{int(host[1])}/0"
            if not isinstance(host, str) or not host.startswith(
                ("redis://", "rediss://", "unix://")
            ):
                raise ValueError(
                    "hosts must be Redis URLs such as 'redis://127.0.0.1:6379/0' "
                    f"(or 'rediss://' for TLS, 'unix://'), or (host, port) pairs; got {host!r}"
                )
            urls.append(host)
        if not urls:
            raise ValueError("hosts must name at least one Redis server")
        return urls

    # routing ----------------------------------------------------------------

    def host_for_queue(self, queue: str) -> str:
        """The URL (password hidden) of the host holding ``queue`` (for ops/tests)."""
        # Hosts are typed Any here: Host lives in redis_hosts, which this
        # module may not import at top level (it needs redis-py).
        return cast(str, self._hosts[self._ring.index_for(queue)].label)

    def _host_of(self, queue: str) -> Any:
        return self._hosts[self._ring.index_for(queue)]

    # encryption -------------------------------------------------------------

    def encode(self, message: dict[str, Any]) -> bytes:
        """Validate, encode and (with ``symmetric_encryption_keys``) seal."""
        data = super().encode(message)
        return data if self._cipher is None else self._cipher.seal(data)

    def open_body(self, data: bytes) -> bytes | None:
        """The msgpack bytes inside a stored body (unsealed with the keys), or
        None if none of ``symmetric_encryption_keys`` opens it."""
        return data if self._cipher is None else self._cipher.open(data)

    def _receive(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        if self._cipher is None:
            return self._receive_stored(queues, block, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            got = self._receive_stored(queues, block, timeout)
            if got is None:
                return None
            plain = self.open_body(got[1])
            if plain is not None:
                return got[0], plain
            # Never deliver what we cannot authenticate; keep waiting for
            # the next message within the caller's timeout.
            self._undecryptable += 1
            logger.warning(
                "dropped a message on %r that none of symmetric_encryption_keys opens "
                "(sent with another key, unencrypted, or altered in Redis)", got[0]
            )
            if deadline is not None:
                timeout = max(0.0, deadline - time.monotonic())

    # sending ----------------------------------------------------------------

    def _push(self, queue: str, channel: str, data: bytes, expires: float, capacity: int,
              now: float) -> bool:
        item = f"{expires!r}|{'' if channel == queue else channel}|".encode() + data
        host = self._hosts[0] if len(self._hosts) == 1 else self._host_of(queue)
        keys: tuple[str, ...] = (self._qprefix + queue, self._full_key)
        before: list[tuple[Any, ...]] = []
        if queue[-1] == "!":  # buffered items of its reader count too
            keys += (self._hprefix + queue,)
            if self._reported:
                before = self._held_fixes((queue,), now)
        try:
            queued: int = host.run(  # PUSH returns 1 if queued, 0 if refused as full
                _scripts.PUSH, keys,
                (item, repr(now), capacity, self._queue_ttl, queue, self._full_ttl),
                before,
            )
            return queued == 1
        except self._out_of_memory as exc:
            # Back-pressure like a full channel (an interface server answers
            # 503), with the reason: the whole server is full, not the channel.
            raise self.ChannelFull(
                f"Redis at {host.label} is out of memory ({exc}); {channel!r} not queued. "
                "Consumers are not keeping up: add workers, lower capacities, or raise "
                "that server's maxmemory (keep maxmemory-policy noeviction)"
            ) from exc

    # receiving --------------------------------------------------------------

    def _by_host(self, queues: list[str]) -> list[tuple[Any, list[str]]]:
        """Queue keys grouped by host, hosts in order of their first queue."""
        if len(self._hosts) == 1:
            return [(self._hosts[0], [self._qprefix + q for q in queues])]
        groups: dict[int, tuple[Any, list[str]]] = {}
        for queue in queues:
            index = self._ring.index_for(queue)
            if index not in groups:
                groups[index] = (self._hosts[index], [])
            groups[index][1].append(self._qprefix + queue)
        return list(groups.values())

    def _parse(self, key: str | bytes, item: bytes, now: float) -> tuple[str, bytes] | None:
        """``(channel, data)`` of a popped item, or None if it has expired
        (or is not an item a layer wrote: that is logged and dropped)."""
        if isinstance(key, bytes):  # (redis-py returns exactly bytes)
            key = key.decode()
        try:
            expires, channel, data = item.split(b"|", 2)
            if float(expires) <= now:
                return None
            if channel:
                return channel.decode("ascii"), data
        except (ValueError, UnicodeDecodeError) as exc:  # a forged or foreign item
            logger.error("dropped a malformed item from Redis list %r (%s): %r",
                         key, exc, item[:80])
            return None
        return key[len(self._qprefix):], data

    def _pop_now(self, host: Any, keys: list[str]) -> tuple[str, bytes] | None:
        """Non-blocking pop from ``keys`` on ``host`` (dropping expired items)."""
        if len(keys) == 1:
            # Plain LPOP is cheaper than a script; expired heads are rare.
            item = host.execute("LPOP", keys[0])
            if item is None:
                return None
            got = self._parse(keys[0], item, self.clock())
            if got is not None:
                return got
        for _ in range(MAX_DROPPED):  # a malformed item is dropped: pop the next one
            found = host.run(_scripts.POP, keys, (repr(self.clock()),))
            if not found:
                return None
            got = self._parse(keys[found[0] - 1], found[1], -math.inf)
            if got is not None:
                return got
        return None

    def _receive_stored(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        """Pop ``(channel, stored bytes)`` as the base ``_receive`` hook describes."""
        if (len(queues) == 1 and self._batched(queues[0])) or (
            self._buffers and self._has_buffered(queues)
        ):
            try:
                got = self._receive_batched(queues)
            except RedisUnavailable:
                if not block or timeout == 0:
                    raise
                got = None  # the blocking wait below logs, backs off and retries
            if got is not None or not block or timeout == 0:
                return got
        groups = self._by_host(queues)
        if not block or timeout == 0:
            failure: RedisUnavailable | None = None
            for host, keys in groups:
                try:
                    got = self._pop_now(host, keys)
                except RedisUnavailable as exc:  # still serve the other hosts
                    failure = failure or exc
                    continue
                if got is not None:
                    return got
            if failure is not None:
                raise failure
            return None
        return self._wait(groups, None if timeout is None else time.monotonic() + timeout)

    # flush and statistics ---------------------------------------------------

    def _own_keys(self, host: Any, pattern: str) -> list[bytes]:
        """Keys of this layer only: a prefix ``"x"`` must not match ``"x:y:q:a"``."""
        start = len(self.prefix) + 1
        own = []
        for key in host.scan(self.prefix.translate(_GLOB_SPECIAL) + pattern):
            parts = key[start:].split(b":")
            if len(parts) == 2 and parts[0].decode() in _OWN_KINDS:
                own.append(key)
        return own

    def _flush(self) -> None:
        self._drop_buffers()  # deleted with everything else (held records too)
        self._group_plans.clear()
        for host in self._hosts:
            keys = self._own_keys(host, ":*")
            for i in range(0, len(keys), 500):
                host.execute("UNLINK", *keys[i:i + 500])

    def _queue_stats(self, queue: str, now: float) -> tuple[int, float | None, int]:
        keys: tuple[str, ...] = (self._qprefix + queue, self._full_key)
        if queue[-1] == "!":  # what its reader holds in its buffer is pending too
            keys += (self._hprefix + queue,)
        pending, oldest, full = self._host_of(queue).run(
            _scripts.QUEUE_STATS, keys, (repr(now), queue), self._held_fixes((queue,), now)
        )
        return int(pending), (float(oldest) if oldest else None), int(full)

    def _global_stats(self, now: float) -> tuple[int, int]:
        pending = full = 0
        self._sync_all_held(now)
        for host in self._hosts:
            keys = self._own_keys(host, ":q:*")
            for i in range(0, len(keys), 500):
                pending += int(host.run(_scripts.PENDING, keys[i:i + 500], (repr(now),)))
            held = self._own_keys(host, ":h:*")
            for i in range(0, len(held), 500):  # items readers hold in their buffers
                for value in host.execute("MGET", *held[i:i + 500]):
                    if value:
                        pending += int(value.split(b"|", 1)[0])
            full += sum(int(v) for v in host.execute("HVALS", self._full_key))
        return pending, full

    def delivery_statistics(self) -> dict[str, Any]:
        """What this *process* failed to deliver since it started.

        ``group_members_unreachable``: ``{host label: members}`` a group
        send skipped because their shard was down; ``messages_undecryptable``:
        messages dropped because no ``symmetric_encryption_keys`` opened
        them. Process-local on purpose: it still answers while a shard is
        down (``global_statistics`` needs every shard).
        """
        return {
            "group_members_unreachable": dict(self._unreachable),
            "messages_undecryptable": self._undecryptable,
        }

    def close(self) -> None:
        """Close all connections (they reopen on next use); messages still in
        this process's receive buffers go back to the head of their queues."""
        self._return_buffers()
        for host in self._hosts:
            host.close()

    def __repr__(self) -> str:
        hosts = ", ".join(host.label for host in self._hosts)
        return (
            f"<{type(self).__name__} prefix={self.prefix!r} hosts=[{hosts}] "
            f"expiry={self.expiry}>"
        )


def __getattr__(name: str) -> Any:
    # ``chanlite.layers.redis.RedisSentinelChannelLayer`` works too (asgi_redis
    # exported both layers from one module); it lives in its own module.
    if name == "RedisSentinelChannelLayer":
        # redis_sentinel imports this module: importing it here on first
        # use (not at top level) is what keeps the two out of a circle.
        from .redis_sentinel import (  # noqa: PLC0415 — it imports this module
            RedisSentinelChannelLayer,
        )

        return RedisSentinelChannelLayer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
