"""The blocking receive of the Redis layer: ``BLPOP`` on every host at once.

A mixin of :class:`~chanlite.layers.redis.RedisChannelLayer`, kept apart
because it is the one part of the layer with sockets, waiting and
reconnect backoff: waiting on several hosts' ``BLPOP`` sockets, cancelling
the losers (an item popped in that instant goes back to its queue head,
never delivered twice) and logging an outage once per interval. The
layer provides ``_hosts``, ``_parse``, ``_pop_now``, ``clock``, the
redis-py exception types and the timing settings (``block_chunk``,
``grace``, ``reconnect_backoff``, ``reconnect_backoff_max``).
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from typing import Any

# The layer's logger: operators filter on one name for the whole layer.
logger = logging.getLogger("chanlite.layers.redis")

#: Seconds between two log lines about the same Redis host being unreachable
#: (every receiving thread meets the outage; one line per interval says it).
OUTAGE_LOG_INTERVAL = 10


class _SelectPoller:
    """``select.poll``'s interface over ``select.select``, for platforms
    without ``poll`` (Windows). A receive waits on one socket per Redis host,
    far below select()'s descriptor limit."""

    def __init__(self) -> None:
        self._fds: set[int] = set()

    def register(self, fd: int, _events: int) -> None:
        self._fds.add(fd)

    def unregister(self, fd: int) -> None:
        self._fds.discard(fd)

    def poll(self, timeout_ms: float) -> list[tuple[int, int]]:
        ready, _, _ = select.select(list(self._fds), [], [], max(timeout_ms, 0) / 1000)
        return [(fd, 1) for fd in ready]


class BlockingReceiveMixin:
    """``_wait`` and its helpers (see the module docstring)."""

    # Provided by RedisChannelLayer.
    RedisUnavailable: type[ConnectionError]
    block_chunk: float
    grace: float
    reconnect_backoff: float
    reconnect_backoff_max: float
    _read_timeout: type[BaseException]
    _response_error: type[BaseException]
    _network_errors: Any
    _role_changed: Any
    clock: Any
    _parse: Callable[[str | bytes, bytes, float], tuple[str, bytes] | None]
    _pop_now: Callable[[Any, list[str]], tuple[str, bytes] | None]

    def _wait(
        self, groups: list[tuple[Any, list[str]]], deadline: float | None
    ) -> tuple[str, bytes] | None:
        """Blocking receive: ``BLPOP`` on every host at once, until ``deadline``.

        With one host this is a single ``BLPOP`` round trip. With several,
        a non-blocking pass in the caller's (rotated) order comes first,
        then a ``BLPOP`` is sent to *every* host and we wait on all their
        sockets: no polling, no host starves, and the first reply wins. The
        other pops are cancelled (``CLIENT UNBLOCK``); an item one of them
        popped in that instant is pushed back to the head of its queue,
        never delivered twice. Network failures are logged and retried
        with backoff until ``deadline``, without blocking healthy hosts.
        """
        purge = len(groups) > 1
        while True:
            if purge:
                got = self._tolerant_pop_now(groups)
                if got is not None:
                    return got
            now = time.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                return None
            live = [(h, k) for h, k in groups if h.retry_at <= now]
            if not live:
                pause = min(h.retry_at for h, _ in groups) - now
                time.sleep(pause if remaining is None else min(pause, remaining))
                continue
            chunk = self.block_chunk if remaining is None else min(remaining, self.block_chunk)
            final = remaining is not None and remaining <= self.block_chunk
            replies = self._blpop_all(live, chunk, chunk if final else chunk + self.grace)
            now_clock = self.clock()
            result = None
            purge = len(groups) > 1
            for host, reply in replies:
                if reply is None:
                    continue
                got = self._parse(reply[0], reply[1], now_clock)
                if got is None:
                    purge = True  # expired head: let the script drop the rest
                elif result is None:
                    result = got
                else:
                    self._push_back(host, reply)
            if result is not None:
                return result

    def _blpop_all(
        self, live: list[tuple[Any, list[str]]], server_timeout: float, wait: float
    ) -> list[tuple[Any, Any]]:
        started = []
        for host, keys in live:
            try:
                started.append((host, host.start_blpop(keys, server_timeout)))
            except self.RedisUnavailable as exc:
                self._failed(host, exc)
        replies: list[tuple[Any, Any]] = []
        try:
            pending = self._gather(started, wait, replies)
            for host, conn in pending:
                try:
                    replies.append((host, host.cancel_blpop(conn, self.grace)))
                except self.RedisUnavailable as exc:
                    self._failed(host, exc)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler's exception,
            # an unexpected reply): a connection with a BLPOP still pending
            # would read that reply as the answer to its next command, so
            # drop them all. A message popped meanwhile is lost: at most once.
            for _host, conn in started:
                conn.disconnect()
            raise
        for host, _reply in replies:
            self._recovered(host)
        return replies

    def _gather(
        self, started: list[tuple[Any, Any]], wait: float, replies: list[tuple[Any, Any]]
    ) -> list[tuple[Any, Any]]:
        """Collect BLPOP replies for up to ``wait`` seconds; return the pending ones."""
        if len(started) != 1:
            return self._poll(started, time.monotonic() + wait, replies) if started else []
        host, conn = started[0]
        try:
            replies.append((host, conn.read_response(timeout=wait, disconnect_on_error=False)))
        except self._read_timeout:
            return started
        except self._network_errors as exc:
            conn.disconnect()
            self._failed(host, host.unavailable(exc))
        except self._response_error as exc:
            if not self._role_changed(exc):
                raise
            conn.disconnect()
            self._failed(host, host.unavailable(exc))
        return []

    def _poll(
        self, started: list[tuple[Any, Any]], end: float, replies: list[tuple[Any, Any]]
    ) -> list[tuple[Any, Any]]:
        """Wait on several BLPOP sockets (poll(): no FD_SETSIZE limit) until
        one delivers an item or ``end``; return the still pending ones."""
        pending = {conn._sock.fileno(): (host, conn) for host, conn in started}
        poller = select.poll() if hasattr(select, "poll") else _SelectPoller()  # Windows: no poll
        for fd in pending:
            poller.register(fd, select.POLLIN if hasattr(select, "poll") else 1)
        while pending:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready = poller.poll(left * 1000)
            got_item = False
            for fd, _ in ready:
                host, conn = pending.pop(fd)
                poller.unregister(fd)
                try:
                    reply = host.finish_blpop(conn)
                except self.RedisUnavailable as exc:
                    self._failed(host, exc)
                    continue
                replies.append((host, reply))
                got_item = got_item or reply is not None
            if got_item:
                break
        return list(pending.values())

    def _tolerant_pop_now(
        self, groups: list[tuple[Any, list[str]]]
    ) -> tuple[str, bytes] | None:
        now = time.monotonic()
        for host, keys in groups:
            if host.retry_at > now:
                continue
            try:
                return_value = self._pop_now(host, keys)
            except self.RedisUnavailable as exc:
                self._failed(host, exc)
                continue
            self._recovered(host)
            if return_value is not None:
                return return_value
        return None

    def _push_back(self, host: Any, reply: Any) -> None:
        """Return an item popped by a cancelled BLPOP to the head of its queue."""
        try:
            host.execute("LPUSH", reply[0], reply[1])
        except self.RedisUnavailable as exc:  # lost, never duplicated: at most once
            logger.warning("could not push back a message to %s: %s", host.label, exc)

    def _failed(self, host: Any, exc: Exception) -> None:
        delay = host.note_failure(self.reconnect_backoff, self.reconnect_backoff_max)
        if host.should_report(OUTAGE_LOG_INTERVAL):
            logger.warning(
                "blocking receive: %s; reconnecting in %.2f s (attempt %d; logged once per "
                "%d s while it lasts)", exc, delay, host.failures, OUTAGE_LOG_INTERVAL)

    @staticmethod
    def _recovered(host: Any) -> None:
        if host.failures:
            host.failures = 0
            host.reset_reports()
            logger.info("Redis at %s is reachable again", host.label)
            host.retry_at = 0.0
