"""The layer model again, on the Redis layer, with rules aimed at its batched
receive of process-specific queues (see chanlite/layers/redis_batch.py).

Why a separate machine: the shared machine already receives from ``p!`` and
``q!`` (which batch on Redis), but rarely builds the states where batching
can go wrong. These rules build them on purpose and let the shared model
judge: a buffer whose messages expire before they are served, a flush or a
``close()`` while a buffer holds messages (close must give them back to
Redis, in order: the model expects them still there), and group sends
racing a buffer for the capacity of a shared ``p!`` queue. Every rule of the
shared machine runs here too.

A second *reader* of the same ``a!`` prefix is deliberately not a rule:
``!`` names one reader (the process that owns the prefix), and another
reader would not see what the first holds (docs/layers.md says so).
"""

from __future__ import annotations

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from .layers import LAYERS
from .test_layer_machine import EXPIRY, LayerMachine, counted, payloads


class RedisBatchMachine(LayerMachine):
    entry = LAYERS["redis"]

    @rule(count=st.integers(min_value=2, max_value=4), payload=payloads,
          late=st.sampled_from([EXPIRY - 0.001, EXPIRY, EXPIRY + 0.001]))
    @counted
    def buffer_then_expire(self, count: int, payload: object, late: float) -> None:
        """Fill ``p!``, receive one (the rest is buffered now), jump to about
        when they expire, and receive again: expired buffered messages must
        be dropped, never served, and must stop counting as pending."""
        for _ in range(count):
            self._send("p!x", payload)
        self.check_received(self.layer.receive(["p!"]), ["p!"])
        self.clock.advance(late)
        self.check_received(self.layer.receive(["p!"]), ["p!"])
        event("batch: buffered then expired")

    @rule(close_too=st.booleans())
    @counted
    def receive_one_then_close(self, close_too: bool) -> None:
        """Receive from ``p!`` (buffering the rest), then ``close()``: the
        buffered messages go back to Redis; the model says nothing changed,
        so the next receives must still find them, in order."""
        self.check_received(self.layer.receive(["p!"]), ["p!"])
        if close_too:
            self.layer.close()
            event("batch: closed with a buffer")

    @rule(payload=payloads)
    @counted
    def buffer_then_group_send(self, payload: object) -> None:
        """A buffer and a group send competing for ``p!``'s capacity."""
        self.check_received(self.layer.receive(["p!"]), ["p!"])
        self._send_group("g1", payload)


def test_redis_batched_receive_behaves_like_the_model() -> None:
    reason = LAYERS["redis"].unavailable()
    if reason:
        pytest.skip(f"redis layer unavailable: {reason}")
    run_state_machine_as_test(RedisBatchMachine)
