"""Batched receive of process-specific queues for the Redis channel layer.

Why: a receive is one round trip to Redis, so a process draining its
reply channels (``a!x``: every WebSocket of an interface server, every
member of a group on it) was capped at one message per round trip (~20k/s
here) while the group send that filled them costs one round trip per shard.
A process-specific queue ``a!`` has exactly *one* reader — the process that
owns the prefix (``new_channel("a!")`` names are random per process) — so
that reader may take up to ``receive_batch`` items in one ``LPOP key count``
and serve the rest from a local buffer without taking anything from another
reader. Shared channels (``http.request``, ``chat?x``) keep single pops:
batching there would let one worker sit on messages another idle worker
could handle (fairness between workers).

What stays true (the property suite checks it on a real Redis):

- **Capacity.** Buffered items still count: the reader records how many
  live items it holds in ``<prefix>:h:<queue>`` (see
  :mod:`~chanlite.layers.redis_scripts`); pushes refuse at ``capacity -
  held``. The record is corrected by the reader in the same round trip as
  its own sends and statistics, and reset by its next batch; until then
  another process sees a count that may be *higher* than the truth (by the
  messages served since), so a send may be refused early, never accepted
  over capacity.
- **Expiry.** Each buffered item keeps its deadline and is dropped, not
  served, if it has expired by the time it would be.
- **At most once, nothing lost.** Items move (``LPOP``) from Redis to the
  buffer; ``close()`` pushes the unserved live ones back to the head of
  their queue (in order), ``flush()`` discards them with everything else.
- **Order.** One lock per layer orders refills, so a queue is served FIFO
  even when several threads of the process receive from it.

Limits (documented in docs/layers.md): a second process receiving from the
same ``a!`` prefix would not see what the first has buffered (``!`` means
one reader); ``flush()`` in *another* process cannot reach a reader's
buffer; a forked child drops the buffer it inherited instead of serving
its parent's messages twice.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from . import redis_scripts as _scripts

logger = logging.getLogger("chanlite.layers.redis")

#: A buffered item: (expires, channel, stored bytes).
Item = tuple[float, str, bytes]

#: Layers with buffers, emptied in a forked child (see ``_after_fork``).
_LAYERS: weakref.WeakSet[BatchedReceiveMixin] = weakref.WeakSet()


def _after_fork() -> None:
    # A forked child must not serve what its parent holds (the parent serves
    # it): at most once. Its records start empty; a hook instead of a pid
    # check on every receive, which costs a system call per message.
    for layer in list(_LAYERS):
        layer._buffers, layer._reported = {}, {}
        layer._buffer_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class BatchedReceiveMixin:
    """Buffers of process-specific queues; mixed into the Redis layer."""

    # Provided by RedisChannelLayer.
    RedisUnavailable: type[ConnectionError]
    clock: Any
    _qprefix: str
    _queue_ttl: int
    _host_of: Any
    _pop_now: Callable[[Any, list[str]], tuple[str, bytes] | None]

    def _init_batching(self, prefix: str, receive_batch: int) -> None:
        if type(receive_batch) is not int or receive_batch < 1:
            raise ValueError(
                f"receive_batch must be an int >= 1 (1 turns batching off), not {receive_batch!r}"
            )
        #: Most items one receive from a ``!`` queue takes from Redis at once.
        self.receive_batch = receive_batch
        self._hprefix = f"{prefix}:h:"
        self._buffers: dict[str, deque[Item]] = {}
        #: What ``<prefix>:h:<queue>`` says now, as far as we know:
        #: (count, expires of the oldest) or None when unknown.
        self._reported: dict[str, tuple[int, float | None] | None] = {}
        self._buffer_lock = threading.Lock()
        _LAYERS.add(self)

    def _batched(self, queue: str) -> bool:
        return self.receive_batch > 1 and queue[-1] == "!"

    def _held_key(self, queue: str) -> str:
        return self._hprefix + queue

    # serving ----------------------------------------------------------------

    def _take_buffered(self, queue: str, now: float) -> tuple[str, bytes] | None:
        """The next live buffered item of ``queue`` (expired ones dropped)."""
        buffer = self._buffers.get(queue)
        while buffer:
            expires, channel, data = buffer.popleft()
            if expires > now:
                return channel, data
        return None

    def _has_buffered(self, queues: list[str]) -> bool:
        buffers = self._buffers
        return any(buffers.get(queue) for queue in queues)

    def _receive_batched(self, queues: list[str]) -> tuple[str, bytes] | None:
        """Non-blocking receive when a batch applies: a lone ``!`` queue, or
        queues of which some have buffered items. Raises RedisUnavailable
        only if nothing could be served and a host failed."""
        with self._buffer_lock:
            now = self.clock()
            if len(queues) == 1:
                got = self._take_buffered(queues[0], now)
                if got is not None:
                    return got
                return self._refill(queues[0], now)
            # Several queues, some buffered: serve the first (in the caller's
            # rotated order) that has a message, buffered or in Redis, so
            # a buffer never jumps ahead of the queues before it (fairness).
            failure: ConnectionError | None = None
            for queue in queues:
                got = self._take_buffered(queue, now)
                if got is not None:
                    return got
                try:
                    got = self._pop_now(self._host_of(queue), [self._qprefix + queue])
                except self.RedisUnavailable as exc:
                    failure = failure or exc
                    continue
                if got is not None:
                    return got
            if failure is not None:
                raise failure
            return None

    def _refill(self, queue: str, now: float) -> tuple[str, bytes] | None:
        """Pop a batch of ``queue`` into its buffer and serve the first."""
        key = self._qprefix + queue
        reply = self._host_of(queue).run(
            _scripts.POP_BATCH, (key, self._held_key(queue)),
            (repr(now), self.receive_batch, self._queue_ttl),
        )
        buffer = self._buffers.get(queue)
        if buffer is None:
            buffer = self._buffers[queue] = deque()
        lengths, joined = reply
        append, count, oldest, position = buffer.append, 0, None, 0
        last, deadline = b"", 0.0  # the items of one group send share their deadline
        for length in lengths.split():
            start, position = position, position + int(length)
            item = joined[start:position]
            count += 1
            try:
                expires, channel, data = item.split(b"|", 2)
                if expires != last:
                    deadline, last = float(expires), expires
                entry = (deadline, channel.decode("ascii") if channel else queue, data)
            except (ValueError, UnicodeDecodeError) as exc:  # forged or foreign
                logger.error("dropped a malformed item from Redis list %r (%s): %r",
                             key, exc, item[:80])
                continue
            if count == 2:
                oldest = entry[0]
            append(entry)
        # What POP_BATCH recorded: every live item but the first (None:
        # unknown, when a malformed one was among them; rewritten later).
        self._reported[queue] = (count - 1, oldest) if count > 1 else (0, None)
        if count > 1 and oldest is None:
            self._reported[queue] = None
        return self._take_buffered(queue, now)

    # keeping the held record right -------------------------------------------

    def _held_fix(self, queue: str, now: float) -> list[tuple[Any, ...]]:
        """Commands that make ``queue``'s held record match the buffer now
        (none if it already does). Call with the buffer lock held."""
        buffer = self._buffers.get(queue)
        while buffer and buffer[0][0] <= now:
            buffer.popleft()  # expired: dropped here as at serving time
        value = (len(buffer), buffer[0][0]) if buffer else (0, None)
        if self._reported.get(queue, (0, None)) == value:
            return []
        self._reported[queue] = value
        key = self._held_key(queue)
        if not value[0]:
            return [("DEL", key)]
        return [("SET", key, f"{value[0]}|{value[1]!r}", "EX", self._queue_ttl)]

    def _held_fixes(self, queues: Any, now: float) -> list[tuple[Any, ...]]:
        """:meth:`_held_fix` for each of ``queues`` this process buffers."""
        if not self._reported:
            return []
        fixes: list[tuple[Any, ...]] = []
        with self._buffer_lock:
            for queue in queues:
                if queue in self._reported:
                    fixes += self._held_fix(queue, now)
        return fixes

    def _sync_all_held(self, now: float) -> None:
        """Correct every held record of this process (before global statistics)."""
        for queue in list(self._reported):
            fixes = self._held_fixes((queue,), now)
            if fixes:
                self._host_of(queue).execute_after(fixes[:-1], *fixes[-1])

    def _buffered_count(self, now: float) -> int:
        """Live items this process holds (for logs)."""
        return sum(1 for buffer in self._buffers.values() for item in buffer if item[0] > now)

    # flush and close ----------------------------------------------------------

    def _drop_buffers(self) -> None:
        """Forget every buffered item (``flush``: they are deleted with the rest)."""
        with self._buffer_lock:
            self._buffers.clear()
            self._reported.clear()

    def _return_buffers(self) -> None:
        """Push unserved live items back to the head of their queues, in
        order, and clear the held records (``close``): nothing is lost."""
        with self._buffer_lock:
            now = self.clock()
            for queue, buffer in list(self._buffers.items()):
                items = [
                    f"{expires!r}|{'' if channel == queue else channel}|".encode() + data
                    for expires, channel, data in buffer if expires > now
                ]
                if not items and self._reported.get(queue, (0, None)) == (0, None):
                    continue  # nothing held, nothing recorded
                key, held = self._qprefix + queue, self._held_key(queue)
                try:
                    if items:  # LPUSH puts each value at the head: last first
                        self._host_of(queue).execute_after(
                            [("LPUSH", key, *reversed(items))], "DEL", held)
                    else:
                        self._host_of(queue).execute("DEL", held)
                except self.RedisUnavailable as exc:  # at most once: never twice
                    logger.warning("close: %d buffered message(s) of %r lost: %s",
                                   len(items), queue, exc)
            self._buffers.clear()
            self._reported.clear()
