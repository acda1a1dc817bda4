"""Counted log lines: one line per interval for an event that can happen in floods.

A full channel under load is not one event but thousands (every skipped
group member, every connection closed by back-pressure); a log line each
would bury the log and cost more than the event. :class:`IntervalLog`
writes the first occurrence at once, then counts the rest and writes one
line with the count when the interval has passed: at the next occurrence,
or when the owner calls :meth:`IntervalLog.flush` (the server does from a
timer, so the last count of a burst is not lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["IntervalLog"]


class IntervalLog:
    """``note(n, detail)`` from any thread; at most one line per ``interval`` s.

    ``message`` is a %-format with two fields: the count and the interval
    text (``"in the last 10s"``, or ``""`` for the first line), followed by the
    latest ``detail``.
    """

    def __init__(self, logger: logging.Logger, level: int, message: str,
                 interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.level = level
        self.message = message
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._detail = ""
        self._last: float | None = None
        self.total = 0  # every count ever noted (tests and statistics)

    def note(self, count: int = 1, detail: str = "") -> None:
        """Count ``count`` occurrences; log now if the interval has passed."""
        with self._lock:
            self.total += count
            self._count += count
            self._detail = detail
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                return
            line = self._take(now, first=self._last is None)
        self.logger.log(self.level, *line)

    def flush(self) -> None:
        """Log what was counted since the last line (if anything)."""
        with self._lock:
            if not self._count:
                return
            line = self._take(self.clock(), first=False)
        self.logger.log(self.level, *line)

    @property
    def pending(self) -> int:
        """Occurrences counted but not logged yet."""
        return self._count

    def _take(self, now: float, first: bool) -> tuple:
        when = "" if first else f" in the last {self.interval:g}s"
        line = (self.message, self._count, when, self._detail)
        self._count = 0
        self._last = now
        return line
