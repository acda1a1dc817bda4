"""The selector I/O loop: one thread owns every socket, timer and session.

Everything that touches a socket or a protocol core runs under the loop's
*turn* (a lock the loop thread holds except while it sleeps in ``select()``),
so none of it needs locks of its own. Other threads (the WSGI pool, the reply
pump) hand work over with :meth:`Loop.call_soon_threadsafe`:

- when the loop is asleep in ``select()`` with nothing queued, the calling
  thread takes the turn and runs the callback itself - a finished response
  goes out from the pool thread that produced it, without waking the loop
  (which would cost a wake-up byte, a ``select()`` return and a GIL hand-over
  per response: most of the gap to waitress at one connection);
- otherwise it appends to a deque, and writes one byte to a socketpair the
  selector watches only if the loop is asleep; a loop that is busy finds the
  deque before it sleeps again.

The loop never polls: it sleeps until a socket is ready, a timer is due or a
hand-over arrives.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVarTuple

__all__ = ["Loop", "Timer"]

log = logging.getLogger("chanlite.server")

#: The arguments a hand-over passes to its callback: ``call_soon(f, a, b)``
#: is checked like ``f(a, b)``, so a wrong hand-over fails in mypy, not on
#: the loop thread (where it would only be logged).
_Args = TypeVarTuple("_Args")


class Timer:
    """A cancellable callback scheduled on the loop.

    Cancellation is lazy (the entry stays in the heap), but counted: when
    cancelled entries are most of the heap the loop rebuilds it, so the
    connect timeouts of thousands of connections that did connect do not
    stay in memory (with their callbacks) until they would have fired."""

    __slots__ = ("when", "callback", "cancelled", "_loop")

    def __init__(self, when: float, callback: Callable[[], Any], loop: Loop | None = None) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._loop = loop

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback = _cancelled  # release what the callback holds at once
            if self._loop is not None:
                self._loop._cancelled += 1


def _cancelled() -> None:  # pragma: no cover - never called
    """The callback of a cancelled timer."""

#: rebuild the timer heap when this many entries, and over half of it, are cancelled
_COMPACT_AFTER = 256


class Loop:
    """A minimal reactor: readiness callbacks, timers and thread hand-over."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled timers still in the heap
        # (callback, args) pairs, each checked where it was queued (``_Args``).
        self._calls: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._wake_lock = threading.Lock()
        # The turn: held by the loop thread except around select(); another
        # thread holding it may run loop work (see call_soon_threadsafe).
        self._turn = threading.Lock()
        self._asleep = False  # in select(): a hand-over must wake it
        self._sleep_until = 0.0  # when that select() returns by itself (inf: never)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        self.running = False

    # ------------------------------------------------------------ sockets

    def add_reader(self, sock: socket.socket, callback: Callable[[int], Any]) -> None:
        self.selector.register(sock, selectors.EVENT_READ, callback)

    def modify(self, sock: socket.socket, events: int, callback: Callable[[int], Any]) -> None:
        """Change interest; ``events == 0`` unregisters (e.g. paused reading)."""
        try:
            if events:
                self.selector.modify(sock, events, callback)
            else:
                self.selector.unregister(sock)
        except KeyError:
            if events:
                self.selector.register(sock, events, callback)

    def remove(self, sock: socket.socket) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    # ------------------------------------------------------------- timers

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback, self)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def _compact_timers(self) -> None:
        """Drop cancelled entries from the heap (in place: ``run`` holds it)."""
        self._timers[:] = [entry for entry in self._timers if not entry[2].cancelled]
        heapq.heapify(self._timers)
        self._cancelled = 0

    # ---------------------------------------------------------- hand-over

    def call_soon(self, callback: Callable[[*_Args], object],
                  *args: *_Args) -> None:
        """Run ``callback(*args)`` after the current event (loop thread only);
        used instead of recursion when one event triggers the next."""
        self._calls.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[[*_Args], object],
                             *args: *_Args) -> None:
        """Run ``callback(*args)`` on the loop soon (from any thread).

        If the loop is asleep in ``select()`` and nothing is queued, the
        callback runs now, on the calling thread, holding the loop's turn (so
        it is serialised with all loop work, and runs after every call
        handed over before it: order per thread is kept). Work it schedules
        for later (``call_soon``, an earlier timer, :meth:`stop`) wakes the
        loop; interest it changes (``modify``) reaches the sleeping
        ``select()`` through the kernel (epoll and kqueue watch registrations
        made while they wait)."""
        turn = self._turn
        if self._asleep and not self._calls and turn.acquire(False):
            try:
                if self._asleep and not self._calls:  # still asleep: run it here
                    timers = self._timers
                    try:
                        callback(*args)
                    except Exception:
                        log.exception("error in %r on the I/O loop", callback)
                    if (self._calls or not self.running
                            or (timers and timers[0][0] < self._sleep_until)):
                        self._wake()
                    return
            finally:
                turn.release()
        self._calls.append((callback, args))
        if self._asleep:
            self._wake()

    def _wake(self) -> None:
        """Make a sleeping ``select()`` return (at most one byte in flight)."""
        if self._wake_pending:
            return
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up byte is already queued, or the loop is closed

    def call_soon_from_signal(self, callback: Callable[[*_Args], object],
                              *args: *_Args) -> None:
        """Like :meth:`call_soon_threadsafe` but lock-free, for signal handlers
        (which run on the main thread, possibly while it holds the lock)."""
        self._calls.append((callback, args))
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _on_wake(self, mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._wake_pending = False

    def _run_calls(self) -> None:
        calls = self._calls
        while calls:
            callback, args = calls.popleft()
            try:
                callback(*args)
            except Exception:
                log.exception("error in %r on the I/O loop", callback)

    # --------------------------------------------------------------- run

    def run(self) -> None:
        """Serve until :meth:`stop` (on the loop; other threads hand it over
        with ``call_soon_threadsafe(loop.stop)``)."""
        self.running = True
        select = self.selector.select
        timers = self._timers
        calls = self._calls
        turn = self._turn
        monotonic = time.monotonic
        turn.acquire()
        try:
            while self.running:
                # Announce the sleep *before* the last look at the deque: a
                # thread that appended before reading ``_asleep`` is seen
                # here; one that reads it after sends a wake-up byte.
                self._asleep = True
                if calls:
                    timeout: float | None = 0
                    self._sleep_until = 0.0
                elif timers:
                    now = monotonic()
                    timeout = max(0.0, timers[0][0] - now)
                    self._sleep_until = timers[0][0]
                else:
                    timeout = None
                    self._sleep_until = float("inf")
                turn.release()
                try:
                    events = select(timeout)
                finally:
                    turn.acquire()
                    self._asleep = False
                for key, mask in events:
                    try:
                        key.data(mask)
                    except Exception:
                        log.exception("error handling socket %r", key.fileobj)
                if timers:
                    now = monotonic()
                    while timers and timers[0][0] <= now:
                        timer = heapq.heappop(timers)[2]
                        if timer.cancelled:
                            self._cancelled -= 1
                            continue
                        timer.cancelled = True  # fired: a late cancel() is a no-op
                        try:
                            timer.callback()
                        except Exception:
                            log.exception("error in timer %r", timer.callback)
                    if self._cancelled > _COMPACT_AFTER and self._cancelled * 2 > len(timers):
                        self._compact_timers()
                if calls:
                    self._run_calls()
        finally:
            self._asleep = False
            turn.release()

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        """Release the selector and the wake-up pair (after :meth:`run`)."""
        self.remove(self._wake_r)
        self._wake_r.close()
        self._wake_w.close()
        self.selector.close()
