"""In-process channel layer: the default, thread-safe, O(1) per operation.

Each queue is a ``deque`` of ``(expires, channel, data)``. Because every
message gets the same ``expiry`` and the clock never goes back, a queue is
sorted by expiry: expired messages are always at its head and are dropped
there, so no operation scans the backlog. Blocking receivers wait on one
condition variable that every push notifies.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .base import BaseChannelLayer
from .names import queue_for_send

__all__ = ["InMemoryChannelLayer"]


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
        self._ready = threading.Condition(self._lock)
        self._waiting = 0
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
                self._ready.notify_all()
            return True

    def _push_many(self, channels: list[str], data: bytes, expires: float, now: float) -> int:
        # One lock acquisition for the whole fan-out.
        skipped = 0
        with self._lock:
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
            if self._waiting:
                self._ready.notify_all()
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
            self._waiting += 1
            try:
                while True:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._ready.wait(remaining)
                    got = self._pop_locked(queues)
                    if got is not None:
                        return got
            finally:
                self._waiting -= 1

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
