"""The selector I/O loop: one thread owns every socket, timer and session.

Everything that touches a socket or a protocol core runs on this thread, so
none of it needs locks. Other threads (the WSGI pool, the reply pump) hand
work over with :meth:`Loop.call_soon_threadsafe`, which appends to a deque
and writes one byte to a socketpair the selector watches: the loop sleeps in
``select()`` until a socket is ready, a timer is due or a hand-over arrives -
it never polls.
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
from typing import Any

__all__ = ["Loop", "Timer"]

log = logging.getLogger("chanlite.server")


class Timer:
    """A cancellable callback scheduled on the loop (cancellation is lazy)."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], Any]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """A minimal reactor: readiness callbacks, timers and thread hand-over."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._calls: deque[tuple[Callable, tuple]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._wake_lock = threading.Lock()
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
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    # ---------------------------------------------------------- hand-over

    def call_soon(self, callback: Callable, *args: Any) -> None:
        """Run ``callback(*args)`` after the current event (loop thread only);
        used instead of recursion when one event triggers the next."""
        self._calls.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable, *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread soon (from any thread)."""
        self._calls.append((callback, args))
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

    def call_soon_from_signal(self, callback: Callable, *args: Any) -> None:
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
        while self.running:
            if self._calls:
                timeout: float | None = 0
            elif timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            else:
                timeout = None
            for key, mask in select(timeout):
                try:
                    key.data(mask)
                except Exception:
                    log.exception("error handling socket %r", key.fileobj)
            if timers:
                now = time.monotonic()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if not timer.cancelled:
                        try:
                            timer.callback()
                        except Exception:
                            log.exception("error in timer %r", timer.callback)
            if self._calls:
                self._run_calls()

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        """Release the selector and the wake-up pair (after :meth:`run`)."""
        self.remove(self._wake_r)
        self._wake_r.close()
        self._wake_w.close()
        self.selector.close()
