"""A subprocess's output collected on a thread, so tests wait for a line with
a bound (and fail saying what the process printed) instead of blocking on a
pipe read that may never return."""

from __future__ import annotations

import threading
import time

import pytest


class Output:
    """Lines of ``stream`` as they arrive; ``wait_for`` is bounded."""

    def __init__(self, stream, what: str = "the process", timeout: float = 20.0) -> None:
        self.lines: list[str] = []
        self.what = what
        self.timeout = timeout
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_for(self, text: str, timeout: float | None = None) -> str:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.what} never printed {text!r}; output: {self.lines[-20:]!r}")
                self._cond.wait(left)
