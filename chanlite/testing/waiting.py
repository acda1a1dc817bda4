"""``eventually()``: a bounded wait for something another thread or process does.

Most chanlite tests need no waiting at all: the fake clock and
``run_until_idle`` make them deterministic. Tests against a live server, a
worker thread or a subprocess cannot avoid it, and a hand-written
``while not ready: time.sleep(...)`` loop either hangs forever or, with a
deadline, fails with nothing but ``assert False``. This one polls with a
bound and fails saying what it waited for and what it last saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(
    predicate: Callable[[], T],
    what: str | Callable[[], str],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate()`` until it returns a truthy value, and return that value.

    ``what`` names the awaited condition for the failure message; pass a
    callable to describe the state at the moment of failure
    (``lambda: f"{len(server.connections)} connection(s) left"``). After
    ``timeout`` seconds (real time: the point is to wait for other threads
    or processes) it raises ``AssertionError`` with ``what``, the timeout and
    the predicate's last value, so a failure under load says what was slow.

    Exceptions from ``predicate`` propagate at once (an assertion inside it
    fails the test straight away), except the types listed in ``ignore``,
    which count as "not yet" (a server still starting refuses connections);
    the last one ignored is named in the failure message.

    The predicate is always called at least once, and once more at the
    deadline, so a slow first call cannot make it fail without a last look.
    """
    if timeout < 0 or interval <= 0:
        raise ValueError(
            f"eventually() needs timeout >= 0 and interval > 0, not timeout={timeout!r}, "
            f"interval={interval!r}"
        )
    deadline = time.monotonic() + timeout
    while True:
        last_error: BaseException | None = None
        try:
            value = predicate()
        except ignore as exc:
            value, last_error = None, exc  # type: ignore[assignment]
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    description = what() if callable(what) else what
    last = f"last error: {last_error!r}" if last_error is not None else f"last value: {value!r}"
    raise AssertionError(f"timed out after {timeout} s waiting for {description} ({last})")
