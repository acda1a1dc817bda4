"""Redis hosts for the Redis channel layer: URLs, the hash ring, connections.

Imported only when a :class:`~chanlite.layers.redis.RedisChannelLayer` is
built, because it needs redis-py (``pip install chanlite[redis]``).

Why our own per-thread connections instead of ``redis.Redis``: redis-py's
client wraps every command in pool checkout, retry and observability
machinery that costs more than the round trip to a local Redis (about 2.5x
slower on ``LPUSH``/``BLPOP`` pairs here), and its default *retries* would
re-run a push whose reply was lost — a duplicate delivery. A thread owns one
connection per host, so a blocking pop never holds a shared lock, and no
command is ever retried once it may have reached the server.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .names import remember
from .redis_scripts import Script

__all__ = ["HashRing", "Host", "safe_label", "NETWORK_ERRORS", "role_changed"]

#: Seconds of idleness after which a connection is checked for EOF before use.
STALE_AFTER = 0.002

#: What a dead, restarted or unreachable server raises.
NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


#: This machine's name as a CLIENT SETNAME token (no spaces or quotes).
_MACHINE = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"


def role_changed(exc: BaseException) -> bool:
    """A blocking pop ended because the server stopped being a master
    (``-UNBLOCKED``, e.g. demoted by Sentinel): nothing was popped, and the
    caller should reconnect (to the new master) as after a network error."""
    return isinstance(exc, ResponseError) and str(exc).startswith("UNBLOCKED")


def safe_label(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    else:
        netloc = f":***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def pack(args: Sequence[Any]) -> bytes:
    """Encode one command in RESP (what redis-py's packer does, ~3x cheaper).

    Arguments are bytes, str or numbers; the layer's hot paths send a
    handful of small arguments per message, so this is measurable.
    """
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        if type(arg) is not bytes:
            arg = (arg if type(arg) is str else repr(arg)).encode()
        if len(arg) < 4096:
            append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        else:  # large messages: avoid one extra copy
            append(b"$%d\r\n" % len(arg))
            append(arg)
            append(b"\r\n")
    return b"".join(out)


#: Names per ring whose host is remembered (see ``names.remember``): a hit
#: skips hashing the name; only ever-new reply channels fill it.
_RING_CACHE_LIMIT = 20000


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Consistent hashing of names over hosts, with virtual nodes.

    Each host owns ``replicas`` points on a 64-bit ring, placed by hashing
    its *identity* (the URL without password), not its position in the list;
    a name belongs to the first point at or after its own hash. Adding a
    host therefore moves only the names that fall on its new points (about
    ``1/(n+1)`` of them), and reordering the ``hosts`` list moves nothing.
    """

    def __init__(self, identities: Sequence[str], replicas: int = 160) -> None:
        if len(set(identities)) != len(identities):
            raise ValueError(f"hosts must be distinct, got {list(identities)!r}")
        points = sorted(
            (_point(f"{identity}#{replica}"), index)
            for index, identity in enumerate(identities)
            for replica in range(replicas)
        )
        self._keys = [point for point, _ in points]
        self._owners = [index for _, index in points]
        self._single = len(identities) == 1
        self._cache: dict[str, int] = {}

    def index_for(self, name: str) -> int:
        """The index (in the hosts list) of the host owning ``name``."""
        if self._single:
            return 0
        try:
            return self._cache[name]
        except KeyError:
            pass
        position = bisect.bisect_left(self._keys, _point(name))
        return remember(self._cache, name, self._owners[position % len(self._keys)],
                        _RING_CACHE_LIMIT)


class Host:
    """One Redis server: per-thread connections, scripts and error wrapping.

    ``error_class`` is the exception raised (chained to redis-py's) when the
    server cannot be reached or drops the connection; its text names the
    host so an operator knows which one of several is down.
    """

    def __init__(
        self, url: str, options: dict[str, Any], error_class: type[Exception]
    ) -> None:
        self.url = url
        self.label = safe_label(url)
        #: What places this host on the hash ring (stable across restarts).
        self.identity = self.label
        #: Connections are named ``<client_name>:<machine>:<pid>`` so that
        #: ``CLIENT LIST`` (and ``chanlite_redis --stats``) can count processes.
        self.client_name = "chanlite"
        if url.startswith("unix://"):  # TCP-only options break unix sockets
            options = {k: v for k, v in options.items() if k != "socket_keepalive"}
        pool = redis.ConnectionPool.from_url(url, **options)
        self._connection_class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        # Never retry: a command whose reply was lost may have run already.
        self._kwargs["retry"] = Retry(NoBackoff(), 0)
        self._error_class = error_class
        self._local = threading.local()
        self._side_lock = threading.Lock()
        self._side: Any = None
        self._side_pid = 0
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()  # for close()
        #: Reconnect bookkeeping for blocking receivers (see the layer).
        self.failures = 0
        self.retry_at = 0.0
        self._reported_at = float("-inf")

    # connections -----------------------------------------------------------

    def _new_connection(self) -> Any:
        conn = self._connection_class(**self._kwargs)
        conn.register_connect_callback(self._on_connect)
        self._all.add(conn)
        return conn

    def _on_connect(self, conn: Any) -> None:
        # The id lets another connection cancel this one's blocking pop
        # (CLIENT UNBLOCK) without losing the popped item; it changes on
        # every reconnect, hence a connect callback.
        # One round trip for both: the name (with this pid: it changes after
        # fork, and new connections are made then) counts processes.
        conn.send_packed_command([
            pack(("CLIENT", "ID")),
            pack(("CLIENT", "SETNAME", f"{self.client_name}:{_MACHINE}:{os.getpid()}")),
        ])
        conn.chanlite_id = conn.read_response()
        conn.read_response()

    def connection(self) -> Any:
        """This thread's connection, ready to send (stale sockets replaced).

        A server that restarted closed our idle socket; sending on it would
        "succeed" and the reply would be an EOF, leaving us unable to tell
        whether the command ran. So a connection idle for more than
        :data:`STALE_AFTER` seconds is first checked for EOF (one
        non-blocking ``recv``, a few microseconds) and reopened cleanly. Only
        back-to-back commands (tight loops, benchmarks) skip the check: a
        server cannot restart within 2 ms, and if it somehow did, the
        command fails with a clear error — never runs twice.
        """
        local = self._local
        conn = getattr(local, "conn", None)
        now = time.monotonic()
        if conn is None or local.pid != os.getpid():
            # After fork the child must not share the parent's socket.
            conn = local.conn = self._new_connection()
            local.pid = os.getpid()
        elif conn._sock is not None and now - local.used > STALE_AFTER:
            try:
                stale = conn.can_read()
            except NETWORK_ERRORS:
                stale = True
            if stale:
                conn.disconnect()
        local.used = now
        return conn

    def unavailable(self, exc: BaseException) -> Exception:
        """The layer's error for ``exc``, naming this host."""
        return self._error_class(
            f"Redis at {self.label} is unreachable or dropped the connection ({exc}). "
            "Check that the server is running and reachable from this machine; "
            "chanlite reconnects on the next call"
        )

    # commands --------------------------------------------------------------

    def execute(self, *args: Any) -> Any:
        """Run one command; network failures become the layer's error."""
        conn = self.connection()
        try:
            conn.send_packed_command([pack(args)])
            return conn.read_response()
        except NETWORK_ERRORS as exc:
            conn.disconnect()
            raise self.unavailable(exc) from exc

    def execute_after(self, before: Sequence[Sequence[Any]], *args: Any) -> Any:
        """Run the commands ``before`` and then ``args`` in one round trip
        (pipelined); return the last reply. See :meth:`execute_packed`."""
        if not before:
            return self.execute(*args)
        return self.execute_packed(before, pack(args))

    def execute_packed(self, before: Sequence[Sequence[Any]], command: bytes) -> Any:
        """Run the commands ``before`` and then ``command`` (already in RESP:
        a hot caller may reuse most of its bytes) in one round trip; return
        the last reply. Every reply is read, so the connection stays in
        step. Used to correct a batched reader's "held" count in the round
        trip of the command that reads it; an error reply to such a
        correction (e.g. OOM) is ignored: the stale count is higher than the
        truth, so it can only make a send refuse early."""
        conn = self.connection()
        try:
            conn.send_packed_command([pack(c) for c in before] + [command])
            for _ in before:
                try:
                    conn.read_response()
                except ResponseError:
                    pass
            return conn.read_response()
        except NETWORK_ERRORS as exc:
            conn.disconnect()
            raise self.unavailable(exc) from exc

    def run(
        self, script: Script, keys: Sequence[str | bytes], args: Sequence[Any],
        before: Sequence[Sequence[Any]] = (),
    ) -> Any:
        """Run ``script`` by SHA, loading it first if the server lost it;
        ``before``: commands sent in the same round trip, ahead of it."""
        try:
            return self.execute_after(before, "EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # NOSCRIPT means nothing ran, so running it again is safe.
            self.execute("SCRIPT", "LOAD", script.body)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def scan(self, match: str, count: int = 1000) -> list[bytes]:
        """All keys matching ``match`` (SCAN, never KEYS: it does not block Redis)."""
        found: list[bytes] = []
        cursor: Any = 0
        while True:
            cursor, keys = self.execute("SCAN", cursor, "MATCH", match, "COUNT", count)
            found.extend(keys)
            if int(cursor) == 0:
                return found

    # blocking pops ---------------------------------------------------------

    def start_blpop(self, keys: Sequence[str], server_timeout: float) -> Any:
        """Send ``BLPOP`` and return the connection to wait on (not read yet)."""
        conn = self.connection()
        try:
            conn.send_packed_command(
                [pack(("BLPOP", *keys, f"{max(server_timeout, 0.001):.3f}"))]
            )
        except NETWORK_ERRORS as exc:
            conn.disconnect()
            raise self.unavailable(exc) from exc
        return conn

    def finish_blpop(self, conn: Any) -> Any:
        """Read the reply of a started ``BLPOP`` that is known to be ready."""
        try:
            return conn.read_response()
        except NETWORK_ERRORS as exc:
            conn.disconnect()
            raise self.unavailable(exc) from exc
        except ResponseError as exc:
            if not role_changed(exc):
                raise
            conn.disconnect()
            raise self.unavailable(exc) from exc

    def cancel_blpop(self, conn: Any, grace: float) -> Any:
        """Stop a started ``BLPOP`` early and return its reply (maybe an item).

        Redis's own blocking timeouts are only as precise as its ``hz`` (100
        ms by default), so to honour a caller's timeout we cancel the pop
        with ``CLIENT UNBLOCK`` from a side connection. Unlike closing the
        socket, this cannot lose an item the server popped in the meantime:
        the reply (nil, or the item) is still read here.
        """
        try:
            with self._side_lock:
                side = self._side_connection(conn)
                for attempt in (1, 2):
                    # Retrying is safe: unblocking twice is a no-op. The
                    # side connection is often idle for long and stale
                    # after a server restart; the second attempt reconnects.
                    try:
                        side.send_command("CLIENT", "UNBLOCK", conn.chanlite_id)
                        side.read_response()
                        break
                    except NETWORK_ERRORS:
                        side.disconnect()
                        if attempt == 2:
                            raise
            return conn.read_response(timeout=grace)
        except NETWORK_ERRORS as exc:
            conn.disconnect()  # an item popped now is lost: at most once
            raise self.unavailable(exc) from exc
        except ResponseError as exc:
            if not role_changed(exc):
                raise
            conn.disconnect()
            raise self.unavailable(exc) from exc

    def _side_connection(self, target: Any) -> Any:
        """The connection that unblocks ``target`` (call with the side lock held)."""
        if self._side is None or self._side_pid != os.getpid():
            # (after fork the child must not share the parent's socket)
            self._side = self._connection_class(**self._kwargs)
            self._side_pid = os.getpid()
        return self._side

    def note_failure(self, backoff: float, backoff_max: float) -> float:
        """Record a failure; return the delay before the next attempt."""
        self.failures += 1
        # Capped exponent: a host down for hours fails thousands of times, and
        # ``backoff * 2 ** 1100`` raises OverflowError (int -> float) instead
        # of waiting ``backoff_max``; 2 ** 60 already exceeds any max.
        doubling: int = 2 ** min(self.failures - 1, 60)
        delay = min(backoff_max, backoff * doubling)
        self.retry_at = time.monotonic() + delay
        return delay

    def should_report(self, interval: float) -> bool:
        """True at most once per ``interval`` seconds: every receiving thread
        meets the same outage, and one log line per interval says it."""
        now = time.monotonic()
        with self._side_lock:
            if now < self._reported_at + interval:
                return False
            self._reported_at = now
            return True

    def reset_reports(self) -> None:
        """The host is back: report the next outage at once."""
        self._reported_at = float("-inf")

    def close(self) -> None:
        """Close every connection of every thread (they reopen on next use)."""
        for conn in list(self._all):
            conn.disconnect()
        with self._side_lock:
            if self._side is not None:
                self._side.disconnect()
                self._side = None
