"""One re-armable deadline per connection, on the loop's timer heap.

A keep-alive HTTP connection moves its deadline on every request (header
timeout, body timeout, response timeout, keep-alive timeout). Cancelling
and pushing a fresh heap entry each time would leave ~2 dead entries per
request in the loop's heap; a :class:`Deadline` keeps one entry and, when
it fires early (the deadline moved later), re-arms it for the remainder.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .loop import Loop, Timer

__all__ = ["Deadline"]


class Deadline:
    """Run ``callback`` when the deadline passes, unless moved or cancelled."""

    __slots__ = ("loop", "conn", "clock", "when", "callback", "timer")

    def __init__(self, loop: Loop, conn: Connection, clock: Callable[[], float]) -> None:
        self.loop = loop
        self.conn = conn  # callbacks run guarded, and not once it is closed
        self.clock = clock
        self.when = 0.0
        self.callback: Callable[[], None] | None = None
        self.timer: Timer | None = None  # the one heap entry, if armed

    def set(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` ``delay`` seconds from now (``0``: cancel instead)."""
        if not delay:
            self.cancel()
            return
        self.when = self.clock() + delay
        self.callback = callback
        timer = self.timer
        if timer is None or timer.when > self.when:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_later(delay, partial(self.conn.guard, self._fired))

    def cancel(self) -> None:
        """Nothing to run; the heap entry stays (it finds nothing to do)."""
        self.callback = None

    def stop(self) -> None:
        """Cancel and drop the heap entry too (the connection is gone)."""
        self.callback = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fired(self) -> None:
        self.timer = None
        callback = self.callback
        if callback is None or self.conn.closed:
            return
        remaining = self.when - self.clock()
        if remaining > 0.001:  # moved later since armed: wait for the rest
            self.timer = self.loop.call_later(remaining, partial(self.conn.guard, self._fired))
            return
        self.callback = None
        callback()
