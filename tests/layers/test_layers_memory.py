"""The in-memory layer's own behaviour: blocking, wake-ups, fairness, threads.

Why separate from the rules: these are properties of the storage (one
condition variable, deques, rotation) that a user relies on when a worker
thread blocks in ``receive``. Waits are bounded by Events and generous
timeouts — never a sleep hoping another thread got there first.
"""

from __future__ import annotations

import threading
import time
import types

import pytest

from chanlite.layers import memory
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock


@pytest.fixture
def layer() -> InMemoryChannelLayer:
    return InMemoryChannelLayer()


def start(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_until_blocked(layer: InMemoryChannelLayer, waiters: int = 1) -> None:
    """Bounded wait until ``waiters`` threads are inside the layer's wait."""
    eventually(lambda: layer._waiting >= waiters, f"{waiters} receiver(s) to start waiting",
               timeout=10, interval=0.001)


def test_blocking_receive_is_woken_by_a_send_from_another_thread(layer) -> None:
    results: list = []
    received = threading.Event()

    def receiver() -> None:
        results.append(layer.receive(["jobs", "other"], block=True, timeout=30))
        received.set()

    thread = start(receiver)
    wait_until_blocked(layer)
    assert not received.is_set()  # it is really waiting
    layer.send("jobs", {"id": 7})
    assert received.wait(10), "receiver was not woken by send"
    thread.join(10)
    assert results == [("jobs", {"id": 7})]


def test_blocking_receive_is_woken_by_send_group(layer) -> None:
    layer.group_add("room", "reply!1")
    results: list = []
    thread = start(lambda: results.append(layer.receive(["reply!"], block=True, timeout=30)))
    wait_until_blocked(layer)
    layer.send_group("room", {"text": "hi"})
    thread.join(10)
    assert results == [("reply!1", {"text": "hi"})]


def test_a_send_to_another_channel_does_not_end_the_wait(layer) -> None:
    results: list = []
    thread = start(lambda: results.append(layer.receive(["mine"], block=True, timeout=30)))
    wait_until_blocked(layer)
    layer.send("unrelated", {"x": 1})
    layer.send("mine", {"x": 2})
    thread.join(10)
    assert results == [("mine", {"x": 2})]
    assert layer.receive(["unrelated"]) == ("unrelated", {"x": 1})


def test_blocking_timeout_is_honoured(layer) -> None:
    start_time = time.monotonic()
    assert layer.receive(["empty"], block=True, timeout=0.2) == (None, None)
    elapsed = time.monotonic() - start_time
    assert 0.19 <= elapsed < 5, elapsed


def test_zero_timeout_and_non_blocking_return_at_once(layer) -> None:
    start_time = time.monotonic()
    assert layer.receive(["empty"], block=True, timeout=0) == (None, None)
    assert layer.receive(["empty"]) == (None, None)
    assert time.monotonic() - start_time < 2


def test_blocking_receive_returns_a_waiting_message_immediately(layer) -> None:
    layer.send("c", {"n": 1})
    assert layer.receive(["c"], block=True, timeout=None) == ("c", {"n": 1})


def test_blocking_receive_skips_expired_messages() -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(clock=clock, expiry=1)
    layer.send("c", {"stale": True})
    clock.advance(2)
    assert layer.receive(["c"], block=True, timeout=0.05) == (None, None)


def test_a_flooded_channel_does_not_starve_another(layer) -> None:
    layer = InMemoryChannelLayer(capacity=1000)
    for n in range(500):
        layer.send("flood", {"n": n})
    for n in range(5):
        layer.send("quiet", {"n": n})
    first_ten = [layer.receive(["flood", "quiet"])[0] for _ in range(10)]
    assert first_ten.count("quiet") == 5, first_ten


def test_rotation_covers_every_channel_in_the_list(layer) -> None:
    names = ["c0", "c1", "c2", "c3"]
    for name in names:
        for n in range(3):
            layer.send(name, {"n": n})
    got = [layer.receive(names)[0] for _ in range(4)]
    assert sorted(got) == names  # one from each before any channel repeats


def test_fifo_per_channel_and_across_process_specific_names(layer) -> None:
    for n in range(50):
        layer.send("reply!a" if n % 2 else "reply!b", {"n": n})
    got = [layer.receive(["reply!"]) for _ in range(50)]
    assert [m["n"] for _, m in got] == list(range(50))
    assert [c for c, _ in got] == ["reply!a" if n % 2 else "reply!b" for n in range(50)]


def test_many_threads_sending_and_receiving_lose_nothing(layer) -> None:
    layer = InMemoryChannelLayer(capacity=10_000)
    per_sender, senders = 500, 4
    got: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def receiver() -> None:
        while True:
            channel, message = layer.receive(["work"], block=True, timeout=30)
            if channel is None or message.get("stop"):
                return
            with lock:
                got.append(message["n"])
                if len(got) == per_sender * senders:
                    done.set()

    def sender(base: int) -> None:
        for n in range(per_sender):
            layer.send("work", {"n": base + n})

    receivers = [start(receiver) for _ in range(3)]
    for thread in [start(lambda b=b: sender(b * per_sender)) for b in range(senders)]:
        thread.join(30)
    assert done.wait(30), f"only {len(got)} received"
    for _ in receivers:
        layer.send("work", {"stop": True})
    for thread in receivers:
        thread.join(10)
        assert not thread.is_alive()
    assert sorted(got) == list(range(per_sender * senders))


def test_empty_queues_are_forgotten(layer) -> None:
    for n in range(100):
        name = layer.new_channel("reply?")
        layer.send(name, {"n": n})
        assert layer.receive([name])[1] == {"n": n}
    assert layer._queues == {}


def test_default_clock_is_monotonic_and_clock_is_injectable() -> None:
    assert InMemoryChannelLayer().clock is time.monotonic
    clock = FakeClock()
    assert InMemoryChannelLayer(clock=clock).clock is clock


# --- group sends against full and expired queues (issue 20: mutation survivors)


def test_send_group_to_a_full_member_skips_it_and_counts_each_refusal():
    layer = InMemoryChannelLayer(capacity=1, clock=FakeClock())
    layer.group_add("g", "x")
    layer.send_group("g", {"n": 1})  # creates the queue
    layer.send_group("g", {"n": 2})  # full: skipped (capacity looked up, not cached yet)
    layer.send_group("g", {"n": 3})
    assert layer.channel_statistics("x")["channel_full_count"] == 2
    assert layer.global_statistics() == {"messages_pending": 1, "channel_full_count": 2}
    assert layer.receive(["x"]) == ("x", {"n": 1})


def test_send_group_to_a_member_full_of_expired_messages_delivers():
    clock = FakeClock()
    layer = InMemoryChannelLayer(capacity=1, expiry=10, clock=clock)
    layer.group_add("g", "x")
    layer.send("x", {"n": 1})
    clock.advance(10)  # the queued message expires: the queue has room again
    layer.send_group("g", {"n": 2})
    assert layer.channel_statistics("x")["channel_full_count"] == 0
    assert layer.receive(["x"]) == ("x", {"n": 2})


def test_global_statistics_do_not_count_expired_messages():
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=10, clock=clock)
    layer.send("x", {"n": 1})
    layer.send("y", {"n": 2})
    clock.advance(5)
    layer.send("y", {"n": 3})
    clock.advance(5)
    assert layer.global_statistics() == {"messages_pending": 1, "channel_full_count": 0}


def test_a_send_wakes_one_blocked_receiver_not_all(layer) -> None:
    """Each push wakes one receiver of its queue: with three receivers
    blocked on one channel, one message ends exactly one wait."""
    results: list = []
    threads = [start(lambda: results.append(layer.receive(["jobs"], block=True, timeout=30)))
               for _ in range(3)]
    wait_until_blocked(layer, 3)
    layer.send("jobs", {"n": 1})
    deadline = time.monotonic() + 10
    while not results:
        assert time.monotonic() < deadline, "no receiver was woken by the send"
        time.sleep(0.001)
    assert results == [("jobs", {"n": 1})]
    assert layer._waiting == 2, "the other receivers should still be blocked"
    layer.send("jobs", {"n": 2})
    layer.send("jobs", {"n": 3})
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), "a receiver was left blocked with a message waiting"
    assert sorted(message["n"] for _, message in results) == [1, 2, 3]


@pytest.mark.parametrize("attempt", range(30))
def test_no_message_waits_while_a_receiver_that_can_take_it_sleeps(layer, attempt) -> None:
    """A receiver woken for one queue may take from another of its queues;
    the wake-up it did not use must pass on. Receiver A listens on P and Q
    (A first), C on Q only; Q then P are sent. Either A took Q (P waits for
    nobody: C does not listen on it) or A took P and C must get Q — never
    "A took P and C sleeps beside Q"."""
    got: dict = {}
    a = start(lambda: got.__setitem__("A", layer.receive(["p", "q"], block=True, timeout=30)))
    wait_until_blocked(layer, 1)
    c = start(lambda: got.__setitem__("C", layer.receive(["q"], block=True, timeout=30)))
    wait_until_blocked(layer, 2)
    layer.send("q", {"to": "q"})
    layer.send("p", {"to": "p"})
    a.join(10)
    assert not a.is_alive(), "A was not woken"
    if got["A"][0] == "p":
        c.join(10)
        assert not c.is_alive(), "A took P; Q's message waited while C slept beside it"
        assert got["C"] == ("q", {"to": "q"})
    else:
        assert got["A"] == ("q", {"to": "q"})
        assert layer.receive(["p"]) == ("p", {"to": "p"})
        layer.send("q", {"to": "q2"})  # end C's wait
        c.join(10)
        assert got["C"] == ("q", {"to": "q2"})


# --- targeted wake-ups, second pass (issue 20: mutation survivors of the _Waiter change)


def test_a_receive_without_a_timeout_waits_until_a_send(layer) -> None:
    results: list = []
    thread = start(lambda: results.append(layer.receive(["jobs"], block=True, timeout=None)))
    wait_until_blocked(layer)
    layer.send("jobs", {"n": 1})
    thread.join(10)
    assert results == [("jobs", {"n": 1})]


def test_a_timed_out_receiver_unregisters_and_does_not_swallow_the_next_wake_up(layer) -> None:
    """A receive that times out leaves the queue's list of receivers; were it
    still there, the next push would wake it (nobody) instead of the
    receiver really waiting, which would sleep beside the message."""
    assert layer.receive(["jobs"], block=True, timeout=0.05) == (None, None)
    assert layer._waiters == {} and layer._waiting == 0
    results: list = []
    thread = start(lambda: results.append(layer.receive(["jobs"], block=True, timeout=30)))
    wait_until_blocked(layer)
    layer.send("jobs", {"n": 1})
    thread.join(10)
    assert results == [("jobs", {"n": 1})], "the waiting receiver was not woken"
    assert layer._waiters == {}


def test_an_ending_receive_wakes_nobody_for_its_empty_queues(layer) -> None:
    """A and B wait on Q (A first); R waits on P and Q and ends with P's
    message. Q is empty, so R's ending must not wake A: A keeps its turn as
    the oldest receiver of Q and gets Q's next message."""
    got: dict = {}

    def receiver(name: str, channels: list[str]):
        return start(lambda: got.__setitem__(
            name, layer.receive(channels, block=True, timeout=30)))

    a = receiver("A", ["q"])
    wait_until_blocked(layer, 1)
    b = receiver("B", ["q"])
    wait_until_blocked(layer, 2)
    r = receiver("R", ["p", "q"])
    wait_until_blocked(layer, 3)
    layer.send("p", {"to": "p"})
    r.join(10)
    assert got["R"] == ("p", {"to": "p"})
    # Both still registered on q (a receiver woken for nothing re-registers,
    # at the back of the list: wait for that so the check below is not a race).
    eventually(lambda: len(layer._waiters.get("q", ())) == 2, "A and B registered on q",
               timeout=10, interval=0.001)
    layer.send("q", {"to": "q1"})
    a.join(10)
    assert got.get("A") == ("q", {"to": "q1"}), "the oldest receiver of q lost its turn"
    layer.send("q", {"to": "q2"})
    b.join(10)
    assert got["B"] == ("q", {"to": "q2"})


def test_a_receive_listing_a_queue_twice_registers_and_leaves_cleanly(layer) -> None:
    results: list = []
    thread = start(lambda: results.append(layer.receive(["q", "q"], block=True, timeout=30)))
    wait_until_blocked(layer)
    layer.send("q", {"n": 1})
    thread.join(10)
    assert results == [("q", {"n": 1})] and layer._waiters == {}
    assert layer.receive(["q", "q"], block=True, timeout=0.01) == (None, None)
    assert layer._waiters == {}


def test_each_refused_send_is_counted_on_its_queue():
    layer = InMemoryChannelLayer(capacity=1, clock=FakeClock())
    layer.send("x", {"n": 1})
    for _ in range(3):
        with pytest.raises(layer.ChannelFull):
            layer.send("x", {"n": 2})
    assert layer.channel_statistics("x")["channel_full_count"] == 3
    assert layer.global_statistics() == {"messages_pending": 1, "channel_full_count": 3}


def test_a_group_send_reports_how_many_members_it_skipped(caplog):
    layer = InMemoryChannelLayer(capacity=1, clock=FakeClock())
    for name in ("a", "b", "c"):
        layer.group_add("g", name)
    layer.send_group("g", {"n": 1})  # room everywhere: nothing skipped, nothing logged
    assert layer._skips.total == 0 and caplog.messages == []
    layer.receive(["b"])
    layer.send_group("g", {"n": 2})  # a and c full
    assert layer._skips.total == 2
    assert caplog.messages == ["group sends skipped 2 full member(s) (those clients are not "
                               "reading fast enough, or their server is behind); last: "
                               "group 'g', 2 of 3"]
    assert layer.receive(["b"]) == ("b", {"n": 2})


def test_a_deadline_reached_exactly_ends_the_wait(layer, monkeypatch) -> None:
    """``remaining == 0`` is a timeout: on a coarse clock (Windows' monotonic
    ticks every ~15 ms) a zero timeout reads its deadline exactly, and must
    return at once rather than spin on ``wait(0)`` until the clock ticks.
    The layer's clock is frozen here, so it never ticks."""
    monkeypatch.setattr(memory, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
    results: list = []
    thread = start(lambda: results.append(layer.receive(["q"], block=True, timeout=0)))
    thread.join(5)
    assert not thread.is_alive(), "a zero timeout kept waiting at its deadline"
    assert results == [(None, None)] and layer._waiters == {}
