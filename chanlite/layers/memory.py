"""In-process channel layer: the default, thread-safe, O(1) per operation.

Each queue is a ``deque`` of ``(expires, channel, data)``. Because every
message gets the same ``expiry`` and the clock never goes back, a queue is
sorted by expiry: expired messages are always at its head and are dropped
there, so no operation scans the backlog.

Blocking receivers each wait on their own condition (sharing the layer's
lock), registered under every queue they listen on; a push wakes *one*
receiver of that queue, not all of them. Why: an embedded server has several
worker threads and the reply pump blocked at once, and waking every one of
them for each message made them all fight for the GIL to find the queue
empty (a thundering herd that cost most of a one-client echo's latency).
A woken receiver that takes a message from another of its queues, or none,
passes the wake-up on (see ``_pass_on``), so a message never waits while a
receiver that could take it sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .base import BaseChannelLayer
from .names import queue_for_send

__all__ = ["InMemoryChannelLayer"]


class _Waiter:
    """One blocked receive: its condition (on the layer's lock) and queues."""

    __slots__ = ("queues", "ready", "registered")

    def __init__(self, lock: threading.Lock, queues: list[str]) -> None:
        self.ready = threading.Condition(lock)
        self.queues = queues
        self.registered = False  # in the lists of its queues (see _wake_one)


class InMemoryChannelLayer(BaseChannelLayer):
    """Channel layer living in this process's memory (threads share it)."""

    # Every receive goes through this object: "space available" needs no polling.
    space_signal_complete = True

    def __init__(self, **config: Any) -> None:
        # A monotonic clock keeps each deque sorted by expiry even if the
        # wall clock is stepped back; nothing outside this process sees it.
        config.setdefault("clock", None)
        config["clock"] = config["clock"] or time.monotonic
        super().__init__(**config)
        self._lock = threading.Lock()
        #: queue -> blocked receivers listening on it, oldest first
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._waiting = 0  # blocked receivers (tests wait for this)
        self._queues: dict[str, deque[tuple[float, str, bytes]]] = {}
        self._full: dict[str, int] = {}
        self._groups: dict[str, dict[str, float]] = {}

    # queues ---------------------------------------------------------------

    def _push(self, queue: str, channel: str, data: bytes, expires: float, capacity: int,
              now: float) -> bool:
        with self._lock:
            items = self._queues.get(queue)
            if items is None:
                items = self._queues[queue] = deque()
            elif len(items) >= capacity:
                self._drop_expired(items, now)
                if len(items) >= capacity:
                    self._full[queue] = self._full.get(queue, 0) + 1
                    return False
            items.append((expires, channel, data))
            if self._waiting:
                self._wake_one(queue)
            return True

    def _push_many(self, channels: list[str], data: bytes, expires: float, now: float) -> int:
        # One lock acquisition for the whole fan-out.
        skipped = 0
        with self._lock:
            waiting = self._waiting
            for channel in channels:
                queue = queue_for_send(channel)
                items = self._queues.get(queue)
                if items is None:
                    items = self._queues[queue] = deque()
                else:
                    capacity = self._capacity_cache.get(queue) or self.capacity_for(queue)
                    if len(items) >= capacity:
                        self._drop_expired(items, now)
                        if len(items) >= capacity:
                            self._full[queue] = self._full.get(queue, 0) + 1
                            skipped += 1
                            continue
                items.append((expires, channel, data))
                if waiting:
                    self._wake_one(queue)
        return skipped

    @staticmethod
    def _drop_expired(items: deque[tuple[float, str, bytes]], now: float) -> None:
        while items and items[0][0] <= now:
            items.popleft()

    def _pop_locked(self, queues: list[str]) -> tuple[str, bytes] | None:
        now = self.clock()
        for queue in queues:
            items = self._queues.get(queue)
            if items is None:
                continue
            while items:
                expires, channel, data = items.popleft()
                if expires > now:
                    if not items:
                        del self._queues[queue]
                    return channel, data
            del self._queues[queue]  # empty, or held only expired messages
        return None

    def _receive(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        with self._lock:
            got = self._pop_locked(queues)
            if got is not None or not block:
                return got
            deadline = None if timeout is None else time.monotonic() + timeout
            waiter = _Waiter(self._lock, queues)
            self._waiting += 1
            try:
                while True:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    if not waiter.registered:  # first wait, or woken for nothing
                        self._register(waiter)
                    waiter.ready.wait(remaining)
                    got = self._pop_locked(queues)
                    if got is not None:
                        return got
            finally:
                self._waiting -= 1
                if waiter.registered:  # timed out or interrupted
                    self._unregister(waiter)
                self._pass_on(queues)

    # targeted wake-ups (the lock is held in all three) --------------------

    def _register(self, waiter: _Waiter) -> None:
        waiter.registered = True
        for queue in waiter.queues:
            self._waiters.setdefault(queue, deque()).append(waiter)

    def _unregister(self, waiter: _Waiter) -> None:
        waiter.registered = False
        for queue in waiter.queues:
            waiters = self._waiters.get(queue)
            if waiters is not None and waiter in waiters:  # a queue listed twice
                waiters.remove(waiter)  # a deque of blocked threads: short
                if not waiters:
                    del self._waiters[queue]

    def _wake_one(self, queue: str) -> None:
        """Wake the oldest receiver blocked on ``queue`` (none: nothing to do).

        It leaves every queue's list at once, so the next push wakes another.
        """
        waiters = self._waiters.get(queue)
        if waiters:
            waiter = waiters[0]
            self._unregister(waiter)
            waiter.ready.notify()

    def _pass_on(self, queues: list[str]) -> None:
        """A receive is ending: wake a receiver for any of its queues that
        still holds messages. The push that woke this receive may have been
        to a queue it did not take from (it takes in its own order, or a
        non-blocking receive got there first, or it was interrupted)."""
        if not self._waiters:
            return
        for queue in queues:
            if self._queues.get(queue) and queue in self._waiters:
                self._wake_one(queue)

    # groups ---------------------------------------------------------------

    def _group_add(self, group: str, channel: str, now: float) -> None:
        with self._lock:
            members = self._groups.setdefault(group, {})
            members.pop(channel, None)  # re-adding moves it to the end
            members[channel] = now

    def _group_discard(self, group: str, channel: str) -> None:
        with self._lock:
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._groups[group]

    def _group_members(self, group: str, added_after: float) -> list[str]:
        with self._lock:
            members = self._groups.get(group)
            if not members:
                return []
            # Members are in order of their last group_add (re-adding moves a
            # member to the end) and the clock never goes back, so the expired
            # ones are a prefix: stop at the first live member.
            expired = []
            for channel, added in members.items():
                if added > added_after:
                    break
                expired.append(channel)
            for channel in expired:
                del members[channel]
            if not members:
                del self._groups[group]
                return []
            return list(members)

    # flush and statistics -------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            self._queues.clear()
            self._full.clear()
            self._groups.clear()

    def _queue_stats(self, queue: str, now: float) -> tuple[int, float | None, int]:
        with self._lock:
            items = self._queues.get(queue)
            if items:
                self._drop_expired(items, now)
            oldest = items[0][0] if items else None
            return (len(items) if items else 0), oldest, self._full.get(queue, 0)

    def _global_stats(self, now: float) -> tuple[int, int]:
        with self._lock:
            pending = 0
            for items in self._queues.values():
                self._drop_expired(items, now)
                pending += len(items)
            return pending, sum(self._full.values())
