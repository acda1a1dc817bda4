"""One waiter per layer that hands shared-memory messages to coroutines.

Why: the store's blocking receive sleeps on a POSIX semaphore, which an
event loop cannot watch. A thread per awaiting ``receive`` would cost a
thread per WebSocket; a timer would poll. Instead one daemon thread blocks
in :meth:`IPCChannelLayer._receive` on every queue that has awaiting
coroutines (plus a private wake-up queue) and hands each message to the
event loop of a waiter.

Ordering and no-loss rules:

* a queue is popped by exactly one side at a time: the dispatcher pops only
  queues in ``watching`` (published under ``lock`` before it blocks), and a
  coroutine pops directly only queues outside it — so per-channel FIFO holds;
* a popped message goes into ``buffer[channel]`` (under ``lock``) and is
  moved into a future only on that future's own loop, in
  :meth:`Dispatcher._drain`, skipping cancelled futures; a receiver
  cancelled after its future got a message puts it back first in line;
* when the set of watched queues must grow, a one-slot message on the
  private queue ``chanlite-wake.<client>`` rings the dispatcher's doorbell.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict, deque
from typing import Any

from ..layers.ipc import IPCChannelLayer

__all__ = ["Dispatcher"]

#: Seconds close() waits for the dispatcher thread to notice it must stop.
STOP_TIMEOUT = 5.0


class Dispatcher:
    """Per-process receive side of one :class:`chanlite.channels4.IPCChannelLayer`."""

    def __init__(self, ipc: IPCChannelLayer, client: str) -> None:
        self.ipc = ipc
        self.client = client
        self.wake_queue = f"chanlite-wake.{client}"
        self.lock = threading.Lock()
        self.settled = threading.Condition(self.lock)
        #: channel -> [(popped_at, data)] popped from the store, not delivered yet
        self.buffer: dict[str, deque[tuple[float, bytes]]] = defaultdict(deque)
        #: channel -> futures of coroutines awaiting it, oldest first
        self.futures: dict[str, deque[asyncio.Future]] = defaultdict(deque)
        #: queue -> number of coroutines awaiting one of its channels
        self.wanted: dict[str, int] = defaultdict(int)
        #: queues the dispatcher may be popping right now
        self.watching: frozenset[str] = frozenset()
        self.thread: threading.Thread | None = None
        self.stopping = False
        #: futures registered so far: tells the thread whether its last
        #: "every waiter of this queue is served" still holds
        self.registered = 0
        self.error: BaseException | None = None

    # ------------------------------------------------------------ receivers

    async def receive(self, channel: str, queue: str) -> bytes:
        """The next message's bytes for ``channel`` (stored in ``queue``)."""
        loop = asyncio.get_running_loop()
        with self.lock:
            if self.error is not None:
                raise RuntimeError(f"the channels4 dispatcher failed: {self.error!r}")
            # Behind earlier waiters of the channel, never ahead of them: a
            # buffered message may be the one the dispatcher counted as theirs.
            data = None if self.futures.get(channel) else self._take(channel)
            if data is None and not self.wanted.get(queue) and queue not in self.watching:
                data = self._pop_direct(channel, queue)
            if data is not None:
                return data
            future = loop.create_future()
            self.futures[channel].append(future)
            self.wanted[queue] += 1
            self.registered += 1
            wake = queue not in self.watching
            queued = bool(self.buffer.get(channel))
        if queued:  # waiters ahead of us (maybe cancelled): serve in order now
            self._drain(channel)
        if wake:
            self._wake()
        try:
            return await future
        except asyncio.CancelledError:
            with self.lock:
                if future.done() and not future.cancelled():
                    # Our task was cancelled after the message reached it: it
                    # is the channel's oldest message, so it goes back first.
                    self.buffer[channel].appendleft((self.ipc.clock(), future.result()))
                    refill = True
                else:
                    refill = False
            if refill:
                self._drain(channel)
            raise
        finally:
            with self.lock:
                futures = self.futures.get(channel)
                if futures is not None:
                    try:
                        futures.remove(future)
                    except ValueError:
                        pass  # _drain already took it out
                    if not futures:
                        del self.futures[channel]
                self.wanted[queue] -= 1
                idle = not self.wanted[queue]
                if idle:
                    del self.wanted[queue]
            if idle and queue in self.watching:
                # Nobody awaits this queue any more: make the thread stop
                # popping it, so that the next receive pops it directly.
                self._push_wake()

    def _take(self, channel: str) -> bytes | None:
        """The oldest unexpired buffered message of ``channel`` (lock held)."""
        buffered = self.buffer.get(channel)
        if not buffered:
            return None
        oldest = self.ipc.clock() - self.ipc.expiry
        while buffered:
            popped_at, data = buffered.popleft()
            if popped_at > oldest:
                break
        else:
            data = None
        if not buffered:
            del self.buffer[channel]
        return data

    def _pop_direct(self, channel: str, queue: str) -> bytes | None:
        """Pop ``queue`` in the caller's thread (nobody else pops it here)."""
        while True:
            got = self.ipc._receive([queue], False, None)
            if got is None:
                return None
            name, data = got
            if name == channel:
                return data
            # a sibling process-local channel: keep it for its own receive
            self.buffer[name].append((self.ipc.clock(), data))

    def _drain(self, channel: str) -> None:
        """On a loop thread: give buffered messages to this loop's live futures."""
        loop = asyncio.get_running_loop()
        rewatch = False
        with self.lock:
            futures = self.futures.get(channel)
            while futures and self.buffer.get(channel):
                live = next((f for f in futures if f.get_loop() is loop and not f.done()), None)
                if live is None:
                    break
                data = self._take(channel)
                if data is None:  # it expired meanwhile: make sure we are watched
                    rewatch = True
                    break
                futures.remove(live)
                live.set_result(data)
            if rewatch:
                self.registered += 1  # cancels the thread's "all served" shortcut
        if rewatch:
            self._push_wake()

    def forget_buffered(self) -> None:
        """Drop popped-but-undelivered messages (``flush``)."""
        with self.lock:
            self.buffer.clear()

    # ------------------------------------------------------------ the thread

    def _wake(self) -> None:
        """Make the dispatcher re-read ``wanted`` (starting it if needed)."""
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"chanlite-channels4-{self.client}", daemon=True
                )
                self.thread.start()
        self._push_wake()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the store failed: no receive may hang on it
            with self.lock:
                self.error = exc
                self.watching = frozenset()
                futures = [f for fs in self.futures.values() for f in fs]
                self.settled.notify_all()
            for future in futures:
                _call(future.get_loop(), _fail, future, exc)
            raise

    def _loop(self) -> None:
        wake = self.wake_queue
        covered, at = "", -1
        while True:
            with self.lock:
                if self.stopping:
                    self.watching = frozenset()
                    self.settled.notify_all()
                    return
                queues = self._publish(covered, at)
            got = self.ipc._receive(queues + [wake], True, None)
            covered = ""
            if got is None or got[0] == wake:
                continue
            channel, data = got
            with self.lock:
                self.buffer[channel].append((self.ipc.clock(), data))
                futures = self.futures.get(channel, ())
                loops = {f.get_loop() for f in futures}
                queue = _queue_of(channel)
                if self.wanted.get(queue, 0) == len(futures) <= len(self.buffer[channel]):
                    # Every waiter of this queue now has its message: stop
                    # watching it, so that the next receive (usually the same
                    # consumer's) pops it directly instead of through this
                    # thread. Any receive registered after this decision
                    # (``registered`` moves) makes us watch it again.
                    covered, at = queue, self.registered
                    # Published now, before the loop runs the drain: the
                    # loop thread may take the GIL at the next syscall and
                    # receive again before this thread loops around.
                    self._publish(covered, at)
            for loop in loops:
                _call(loop, self._drain, channel)

    def _publish(self, covered: str, at: int) -> list[str]:
        """Set and return the queues to watch (lock held): the wanted ones,
        less ``covered`` while no receive registered since ``at``."""
        if at != self.registered:
            covered = ""  # a receive registered since: it may wait there
        queues = [q for q, n in self.wanted.items() if n and q != covered]
        self.watching = frozenset(queues)
        self.settled.notify_all()
        return queues

    def wait_settled(self, timeout: float = 5.0) -> None:
        """Block until the dispatcher watches exactly the wanted queues (tests)."""
        with self.lock:
            if self.thread is None:
                return
            ok = self.settled.wait_for(
                lambda: self.watching == frozenset(q for q, n in self.wanted.items() if n),
                timeout,
            )
        if not ok:
            raise TimeoutError(
                f"the channels4 dispatcher did not settle within {timeout}s: watching "
                f"{sorted(self.watching)}, wanted {dict(self.wanted)}"
            )

    def stop(self) -> None:
        """Stop the thread and put undelivered messages back into the store."""
        with self.lock:
            self.stopping = True
            thread = self.thread
        if thread is not None:
            self._push_wake()
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError(
                    f"the channels4 dispatcher thread did not stop within {STOP_TIMEOUT}s"
                )
        with self.lock:
            leftovers = [(c, d) for c, items in self.buffer.items() for _, d in items]
            self.buffer.clear()
            for futures in self.futures.values():
                for future in futures:
                    _call(future.get_loop(), future.cancel)
        now = self.ipc.clock()
        for channel, data in leftovers:  # back into the store, for the others
            self.ipc._push(_queue_of(channel), channel, data, now + self.ipc.expiry, 1 << 30, now)
        while self.ipc._receive([self.wake_queue], False, None) is not None:
            pass  # leave no wake-up message behind in the shared store

    def _push_wake(self) -> None:
        now = self.ipc.clock()
        self.ipc._push(self.wake_queue, self.wake_queue, b"\x80", now + self.ipc.expiry, 1, now)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"watching": sorted(self.watching), "wanted": dict(self.wanted),
                    "buffered": {c: len(b) for c, b in self.buffer.items()}}


def _queue_of(channel: str) -> str:
    """The store queue of a channel: ``a!`` for a process-local ``a!x``."""
    return channel.split("!", 1)[0] + "!" if "!" in channel else channel


def _call(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    """``loop.call_soon_threadsafe`` that ignores a closed loop (its futures are moot)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(RuntimeError(f"the channels4 dispatcher failed: {exc!r}"))
