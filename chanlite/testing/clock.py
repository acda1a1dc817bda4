"""A fake clock for deterministic tests: time moves only when told to."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """Callable clock for layers (``clock=FakeClock()``) that never sleeps.

    ``clock()`` returns the current fake time; ``advance(seconds)`` moves it
    forward. Time never goes back, so layer queues stay sorted by expiry.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def time(self) -> float:
        """Same as calling the clock (reads like ``time.time``)."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance() cannot go back in time ({seconds!r})")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"<FakeClock now={self._now}>"
