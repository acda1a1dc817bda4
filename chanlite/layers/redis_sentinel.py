"""Redis Sentinel for the Redis channel layer: shards that survive a failover.

Configure (the asgi_redis 1.x block ports as is: ``hosts`` lists the
Sentinels, ``services`` the monitored masters)::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "chanlite.layers.redis_sentinel.RedisSentinelChannelLayer",
        "CONFIG": {
            "sentinels": [("10.0.0.21", 26379), ("10.0.0.22", 26379), ("10.0.0.23", 26379)],
            "service_names": ["chat-a", "chat-b"],   # one shard per monitored master
            "sentinel_kwargs": {"password": "sentinel-secret"},
            "connection_options": {"password": "redis-secret"},
        },
    }}

Each *service* is one shard of the hash ring, placed by its name (so a
failover, which changes the address, moves no channel). A shard's master is
asked of the Sentinels on first use and again after any network failure,
``READONLY`` reply, blocking pop ended by ``-UNBLOCKED`` (a demotion) or a
connection landing on a server that is no longer a master (checked with
``ROLE`` on every connect). Nothing else changes: no
command is retried once it may have reached a server, so a send in flight
during a failover either succeeds or raises
:class:`~chanlite.layers.redis.RedisUnavailable`; a blocking receive logs,
backs off and resumes on the new master.

What a failover costs (measured in docs/layers.md): messages the old master
accepted but had not yet replicated are lost (Redis replication is
asynchronous); nothing is delivered twice by chanlite, but an item popped
on the old master in its last instant may survive on the replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from .redis import RedisChannelLayer, RedisUnavailable

__all__ = ["RedisSentinelChannelLayer"]

logger = logging.getLogger("chanlite.layers.redis")


def _sentinel_addresses(sentinels: Any) -> list[tuple[str, int]]:
    if isinstance(sentinels, (str, bytes)) or not isinstance(sentinels, Sequence) or not sentinels:
        raise ValueError(
            "sentinels must be a non-empty list of (host, port) pairs or 'host:port' "
            f"strings, e.g. [('10.0.0.21', 26379)]; got {sentinels!r:.60}"
        )
    addresses = []
    for entry in sentinels:
        if isinstance(entry, str) and entry.rpartition(":")[2].isdigit():
            host, _, port = entry.rpartition(":")
            entry = (host, int(port))
        if (
            not isinstance(entry, (tuple, list)) or len(entry) != 2
            or not isinstance(entry[0], str) or type(entry[1]) is not int
        ):
            raise ValueError(
                f"each Sentinel must be a (host, port) pair or 'host:port', not {entry!r}"
            )
        addresses.append((entry[0], entry[1]))
    return addresses


def _service_names(names: Any) -> list[str]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names:
        raise ValueError(
            "service_names must be a non-empty list of the master names the Sentinels "
            f"monitor (their 'sentinel monitor <name> ...' lines), e.g. ['mymaster']; "
            f"got {names!r:.60}"
        )
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"each service name must be a non-empty str, not {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"service_names must be distinct, got {list(names)!r}")
    return list(names)


def _sentinel_host_class() -> type:
    """``SentinelHost``, defined on first use (it needs redis-py)."""
    # redis-py is the optional ``redis`` extra: this module must import
    # without it (``chanlite.layers.redis`` re-exports the layer), so that
    # constructing the layer is what fails, saying which extra to install.
    from redis.exceptions import (  # noqa: PLC0415 — optional extra
        ConnectionError as RedisConnectionError,
    )
    from redis.exceptions import ReadOnlyError, ResponseError  # noqa: PLC0415 — optional extra

    from .redis_hosts import NETWORK_ERRORS, Host  # noqa: PLC0415 — imports redis-py

    class SentinelHost(Host):
        """A shard whose address is the current master of a Sentinel service."""

        def __init__(
            self, service: str, sentinel: Any, options: dict[str, Any],
            error_class: type[Exception], refresh: float,
        ) -> None:
            options = dict(options)
            scheme = "rediss" if options.pop("ssl", False) else "redis"
            db = int(options.pop("db", 0))
            self.service = service
            self.master: tuple[str, int] | None = None
            # The address is a placeholder until the Sentinels name the master.
            super().__init__(f"{scheme}://master.invalid:6379/{db}", options, error_class)
            self.identity = f"sentinel:{service}"
            self.url = f"sentinel:{service}"
            self._sentinel = sentinel
            self._refresh = refresh
            self._discover_lock = threading.Lock()
            self._last_master: tuple[str, int] | None = None
            self._discovered_at = 0.0

        @property
        def label(self) -> str:
            where = "unknown" if self.master is None else f"{self.master[0]}:{self.master[1]}"
            return f"Sentinel service {self.service!r} (master {where})"

        @label.setter
        def label(self, value: str) -> None:  # Host.__init__ sets the URL label
            pass

        def _discover(self) -> tuple[str, int]:
            with self._discover_lock:
                if self.master is not None:
                    return self.master
                try:
                    ip, port = self._sentinel.discover_master(self.service)
                except NETWORK_ERRORS as exc:  # MasterNotFoundError is one
                    raise self.unavailable(exc) from exc
                master = (str(ip), int(port))
                if self._last_master is not None and self._last_master != master:
                    logger.warning(
                        "Sentinel service %r failed over: master is now %s:%s (was %s:%s)",
                        self.service, *master, *self._last_master,
                    )
                self._kwargs["host"], self._kwargs["port"] = master
                self._last_master = master
                self.master = master
                self._discovered_at = time.monotonic()
                return master

        def connection(self) -> Any:
            master = self.master
            if master is not None and self._refresh and (
                time.monotonic() - self._discovered_at > self._refresh
            ):
                self.master = master = None
            if master is None:
                master = self._discover()
            conn = super().connection()
            if (conn.host, conn.port) != master:
                conn.disconnect()
                conn.host, conn.port = master
            return conn

        def _on_connect(self, conn: Any) -> None:
            super()._on_connect(conn)
            # A demoted master (back after a failover) accepts connections
            # but refuses writes; find out now, not on the first send.
            conn.send_command("ROLE")
            role = conn.read_response()[0]
            if role != b"master":
                conn.disconnect()
                raise RedisConnectionError(
                    f"{conn.host}:{conn.port} is a {role.decode()} now, not the master of "
                    f"{self.service!r}"
                )

        def unavailable(self, exc: BaseException) -> Exception:
            error = super().unavailable(exc)
            self.master = None  # ask the Sentinels again on next use
            return error

        def execute(self, *args: Any) -> Any:
            return self._guarded(super().execute, *args)

        def execute_after(self, before: Any, *args: Any) -> Any:
            return self._guarded(super().execute_after, before, *args)

        def execute_packed(self, before: Any, command: bytes) -> Any:
            return self._guarded(super().execute_packed, before, command)

        def _guarded(self, call: Any, *args: Any) -> Any:
            try:
                return call(*args)
            except ResponseError as exc:
                # redis-py strips the "READONLY" code from ReadOnlyError's text.
                if not isinstance(exc, ReadOnlyError) and "READONLY" not in str(exc):
                    raise
                # Nothing ran (a replica refused the write): safe to report.
                self.connection().disconnect()
                raise self.unavailable(exc) from exc

        def _side_connection(self, target: Any) -> Any:
            side = super()._side_connection(target)
            if (side.host, side.port) != (target.host, target.port):
                side.disconnect()
                side.host, side.port = target.host, target.port
            return side

    return SentinelHost


class RedisSentinelChannelLayer(RedisChannelLayer):
    """The Redis layer with each shard found through Redis Sentinel.

    Parameters (besides every :class:`RedisChannelLayer` one except
    ``hosts`` as URLs):

    sentinels: the Sentinel processes, ``[(host, port), ...]`` or
        ``["host:port", ...]``. ``hosts`` is accepted instead, as in
        asgi_redis's ``RedisSentinelChannelLayer``.
    service_names: the monitored master names, one shard each (asgi_redis
        spelled it ``services``; both are accepted).
    sentinel_kwargs: redis-py options for talking to the Sentinels (e.g.
        ``{"password": ...}``); ``connection_options`` still applies to
        the masters (``{"password": ..., "ssl": True, "db": 0}``).
    min_other_sentinels: ignore a Sentinel that sees fewer peers than this.
    sentinel_refresh_interval: also ask the Sentinels again after this many
        seconds (0, the default: only after a failure).
    """

    def __init__(
        self,
        hosts: Any = None,
        prefix: str = "chanlite",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Any = None,
        *,
        sentinels: Any = None,
        service_names: Sequence[str] | None = None,
        services: Sequence[str] | None = None,
        sentinel_kwargs: dict[str, Any] | None = None,
        min_other_sentinels: int = 0,
        sentinel_refresh_interval: float = 0,
        **options: Any,
    ) -> None:
        if sentinels is not None and hosts is not None:
            raise ValueError("give the Sentinels as 'sentinels' or as 'hosts', not both")
        if service_names is not None and services is not None:
            raise ValueError("give 'service_names' or its asgi_redis spelling 'services', not both")
        if sentinel_kwargs is not None and not isinstance(sentinel_kwargs, dict):
            raise ValueError(f"sentinel_kwargs must be a dict, not {sentinel_kwargs!r}")
        if type(sentinel_refresh_interval) not in (int, float) or sentinel_refresh_interval < 0:
            raise ValueError(
                f"sentinel_refresh_interval must be seconds >= 0, not {sentinel_refresh_interval!r}"
            )
        self._sentinel_setup = (
            _sentinel_addresses(sentinels if sentinels is not None else hosts),
            _service_names(service_names if service_names is not None else services),
            dict(sentinel_kwargs or {}),
            min_other_sentinels,
            float(sentinel_refresh_interval),
        )
        super().__init__(
            None, prefix, expiry, group_expiry, capacity, channel_capacity, **options
        )
        self.sentinels = self._sentinel_setup[0]
        self.service_names = self._sentinel_setup[1]

    def _make_hosts(self, hosts: Any, options: dict[str, Any], host_class: Any) -> list[Any]:
        # redis-py: optional, see _sentinel_host_class (RedisChannelLayer's
        # constructor checked it is installed before calling this).
        from redis.backoff import NoBackoff  # noqa: PLC0415 — optional extra
        from redis.retry import Retry  # noqa: PLC0415 — optional extra
        from redis.sentinel import Sentinel  # noqa: PLC0415 — optional extra

        addresses, names, sentinel_kwargs, min_others, refresh = self._sentinel_setup
        timeout = options.get("socket_connect_timeout", 5.0)
        sentinel_kwargs = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # A dead Sentinel is skipped for the next one, not retried.
            "retry": Retry(NoBackoff(), 0),
            **sentinel_kwargs,
        }
        # redis-py's Sentinel.__init__ has no annotations.
        self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
            addresses, min_other_sentinels=min_others, sentinel_kwargs=sentinel_kwargs
        )
        cls = _sentinel_host_class()
        return [cls(name, self._sentinel, options, RedisUnavailable, refresh) for name in names]

    def close(self) -> None:
        super().close()
        for client in self._sentinel.sentinels:
            client.close()

    def __repr__(self) -> str:
        return (
            f"<RedisSentinelChannelLayer prefix={self.prefix!r} services={self.service_names} "
            f"sentinels={self.sentinels} expiry={self.expiry}>"
        )
