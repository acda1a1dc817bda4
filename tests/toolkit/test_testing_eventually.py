"""``chanlite.testing.eventually``: the one bounded wait of the suite."""

from __future__ import annotations

import threading
import time

import pytest

from chanlite.testing import eventually


def test_returns_the_first_truthy_value_once_another_thread_provides_it():
    box: list[int] = []
    threading.Timer(0.05, box.append, (7,)).start()
    assert eventually(lambda: box and box[0], "the timer's value", timeout=10) == 7


def test_times_out_naming_what_it_waited_for_and_the_last_value():
    calls = []

    def never():
        calls.append(1)
        return []

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^timed out after 0\.1 s waiting for the queue "
                                             r"to fill \(last value: \[\]\)$"):
        eventually(never, "the queue to fill", timeout=0.1, interval=0.02)
    assert 0.1 <= time.monotonic() - started < 5
    assert len(calls) >= 2  # polled, and looked once more at the deadline


def test_a_callable_what_describes_the_state_at_failure():
    state = {"left": 3}
    with pytest.raises(AssertionError, match=r"waiting for 3 connection\(s\) to close"):
        eventually(lambda: False, lambda: f"{state['left']} connection(s) to close", timeout=0)


def test_errors_propagate_unless_ignored_then_the_last_one_is_named():
    with pytest.raises(ZeroDivisionError):
        eventually(lambda: 1 / 0, "a division", timeout=5)
    with pytest.raises(AssertionError, match=r"last error: ConnectionRefusedError\('not yet'\)"):
        eventually(_refuse, "a connection", timeout=0.05, ignore=(ConnectionRefusedError,))


def _refuse():
    raise ConnectionRefusedError("not yet")


def test_zero_timeout_still_looks_once():
    assert eventually(lambda: "ready", "readiness", timeout=0) == "ready"


@pytest.mark.parametrize("kwargs", [{"timeout": -1}, {"interval": 0}])
def test_bad_bounds_say_what_to_change(kwargs):
    with pytest.raises(ValueError, match="needs timeout >= 0 and interval > 0"):
        eventually(lambda: True, "anything", **kwargs)
