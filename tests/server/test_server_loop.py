"""The I/O loop's hand-over (chanlite.server.loop): a thread handing work to a
sleeping loop runs it itself, under the loop's turn, and everything that
work schedules for later still happens on the loop."""

from __future__ import annotations

import threading

import pytest

from chanlite.server.loop import Loop

WAIT = 5.0  # bounded waits: a failure says what did not happen


@pytest.fixture
def loop():
    loop = Loop()
    thread = threading.Thread(target=loop.run, name="test-loop", daemon=True)
    thread.start()
    _wait_asleep(loop)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    assert not thread.is_alive(), "the loop did not stop"
    loop.close()


def _wait_asleep(loop: Loop) -> None:
    woke = threading.Event()
    loop.call_soon_threadsafe(woke.set)
    assert woke.wait(WAIT), "the loop never ran a handed-over call"
    deadline = threading.Event()
    for _ in range(500):  # the loop goes back to select() at once; bounded
        if loop._asleep:
            return
        deadline.wait(0.01)
    raise AssertionError("the loop did not go back to sleep in select()")


def test_a_sleeping_loop_work_runs_on_the_calling_thread(loop):
    ran_on = []
    loop.call_soon_threadsafe(lambda: ran_on.append(threading.current_thread()))
    assert ran_on == [threading.current_thread()], (
        "the call should have run at once on the handing-over thread (the loop was asleep)")


def test_work_scheduled_by_an_inline_call_still_runs_on_the_loop(loop):
    done = threading.Event()
    ran_on = []

    def later() -> None:
        ran_on.append(threading.current_thread())
        done.set()

    loop.call_soon_threadsafe(lambda: loop.call_soon(later))
    assert done.wait(WAIT), "a call_soon made by an inline call was never run (loop not woken)"
    assert [t.name for t in ran_on] == ["test-loop"], "ran off the loop thread"


def test_an_earlier_timer_set_by_an_inline_call_wakes_the_loop(loop):
    fired = threading.Event()
    loop.call_soon_threadsafe(lambda: loop.call_later(0.01, fired.set))
    assert fired.wait(WAIT), "the timer was never fired: the sleeping loop did not recompute"


def test_stop_from_another_thread_ends_a_sleeping_loop():
    loop = Loop()
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    _wait_asleep(loop)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    assert not thread.is_alive(), "loop.stop handed over to a sleeping loop did not end run()"
    loop.close()


def test_order_of_one_threads_calls_is_kept_when_some_are_queued(loop):
    """While the turn is taken, a call is queued; a later call from the same
    thread must not run before it, even if the loop is asleep again by then."""
    gate = threading.Event()
    holding = threading.Event()
    order: list[str] = []

    def hold() -> None:
        holding.set()
        assert gate.wait(WAIT)
        order.append("hold")

    holder = threading.Thread(target=loop.call_soon_threadsafe, args=(hold,))
    holder.start()
    assert holding.wait(WAIT), "the holding call never started"
    loop.call_soon_threadsafe(order.append, "first")  # the turn is taken: queued
    gate.set()
    loop.call_soon_threadsafe(order.append, "second")
    holder.join(WAIT)
    done = threading.Event()
    loop.call_soon_threadsafe(done.set)
    assert done.wait(WAIT)
    assert order == ["hold", "first", "second"]


def test_an_inline_call_that_raises_is_logged_and_the_loop_goes_on(loop, caplog):
    def boom() -> None:
        raise RuntimeError("boom")

    loop.call_soon_threadsafe(boom)
    assert "boom" in caplog.text
    ran = threading.Event()
    loop.call_soon_threadsafe(ran.set)
    assert ran.wait(WAIT)


def test_cancelled_timers_release_their_callbacks_and_leave_the_heap():
    """Thousands of connect timeouts cancelled by connections that did
    connect must not stay in memory until they would have fired."""
    import gc
    import weakref

    class Held:
        def __call__(self) -> None:  # pragma: no cover - never fires
            raise AssertionError("a cancelled timer fired")

    loop = Loop()
    held = [Held() for _ in range(500)]
    refs = [weakref.ref(h) for h in held]
    timers = [loop.call_later(1000, h) for h in held]
    keep = [loop.call_later(1000, lambda: None) for _ in range(100)]
    del held
    for timer in timers:
        timer.cancel()
    gc.collect()
    assert all(r() is None for r in refs), "a cancelled timer still holds its callback"
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    _wait_asleep(loop)  # at least one pass of the loop, which compacts the heap
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    assert not thread.is_alive()
    loop.close()
    assert len(loop._timers) == len(keep), "cancelled entries were not dropped from the heap"
    assert all(not t.cancelled for t in keep)
