"""Concurrency property: K blocking receivers get every message exactly once in total.

Why: at-most-once must hold when many receivers race on the same channels,
and blocking receivers must be woken by sends (no lost wake-ups). Receivers
start blocked before anything is sent (the main thread waits until the
layer's ``blocked_receivers`` counts them all), so wake-ups are exercised
every time.

Nothing here waits on luck: the receivers stop on sentinel messages sent only
after the main thread has seen (through an Event, with a generous bound) that
all N messages were received; if a message were lost the bounded wait fails.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock

from .layers import LAYERS

CHANNELS = ["work.a", "work.b", "reply!x", "reply!y"]
RECEIVE = ["work.a", "work.b", "reply!", "control"]
BOUND = 20.0  # seconds; only reached if the layer loses a message or a wake-up


@pytest.mark.parametrize("name", list(LAYERS))
@given(
    receivers=st.integers(1, 4),
    targets=st.lists(st.sampled_from(CHANNELS), min_size=0, max_size=120),
)
def test_every_message_received_exactly_once(
    name: str, receivers: int, targets: list[str]
) -> None:
    entry = LAYERS[name]
    reason = entry.unavailable()
    if reason:
        pytest.skip(f"{name} layer unavailable: {reason}")
    layer = entry.build(FakeClock(), capacity=1000)
    try:
        got: list[tuple[str, int]] = []
        lock = threading.Lock()
        all_received = threading.Event()
        if not targets:
            all_received.set()
        errors: list[BaseException] = []

        def receive_until_stopped() -> None:
            try:
                while True:
                    channel, message = layer.receive(RECEIVE, block=True, timeout=BOUND)
                    assert channel is not None, "blocking receive timed out: lost message?"
                    if channel == "control":
                        return
                    with lock:
                        got.append((channel, message["n"]))
                        if len(got) == len(targets):
                            all_received.set()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                all_received.set()

        threads = [threading.Thread(target=receive_until_stopped) for _ in range(receivers)]
        for thread in threads:
            thread.start()
        eventually(lambda: layer.blocked_receivers >= receivers,
                   lambda: f"{receivers} receivers to block ({layer.blocked_receivers} did)",
                   timeout=BOUND, interval=0.001)
        assert layer.blocked_receivers == receivers
        for n, channel in enumerate(targets):
            layer.send(channel, {"n": n})
        assert all_received.wait(BOUND), f"only {len(got)} of {len(targets)} received"
        for _ in threads:
            layer.send("control", {"stop": True})
        for thread in threads:
            thread.join(BOUND)
            assert not thread.is_alive(), "a receiver never got its stop message"
        assert not errors, errors
        counts = Counter(n for _, n in got)
        assert [n for n, c in counts.items() if c > 1] == [], "delivered more than once"
        assert sorted(got, key=lambda item: item[1]) == [
            (channel, n) for n, channel in enumerate(targets)
        ]
        assert layer.global_statistics()["messages_pending"] == 0
    finally:
        entry.close(layer)
