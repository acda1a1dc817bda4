"""One Hypothesis state machine for the channel-layer semantics, run on every layer.

Why a model: the layer's promises (FIFO per channel, at-most-once, expiry,
capacity, group expiry and fan-out, statistics) are easiest to state as "the
layer behaves like this obvious list-based model". Hypothesis drives both with
random sends, receives, clock jumps, group changes and flushes, and any
difference is a bug. Small capacities make ``ChannelFull`` common.

The model deliberately does not reuse the layer's code: capacities are
written out below instead of being computed from the ``channel_capacity``
patterns, and the model never predicts which queue a multi-channel receive
rotates to — it only checks that the message is the head of a non-empty one.
"""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chanlite.testing.clock import FakeClock

from .layers import LAYERS, LayerEntry

EXPIRY = 10.0
GROUP_EXPIRY = 25.0
CONFIG = {
    "expiry": EXPIRY,
    "group_expiry": GROUP_EXPIRY,
    "capacity": 3,
    "process_capacity": 4,
    # First match wins: "big.one" matches both the glob and the regex.
    "channel_capacity": [
        ("big.*", 5),
        (re.compile(r"(big|tiny)\..*"), 1),
        ("q!", 2),
    ],
}
#: Capacity of each queue as the model sees it (written out, not computed).
CAPACITY = {"a": 3, "b": 3, "big.one": 5, "tiny.one": 1, "p!": 4, "q!": 2}
SEND_NAMES = ["a", "b", "big.one", "tiny.one", "p!x", "p!y", "q!z"]
RECEIVE_NAMES = ["a", "b", "big.one", "tiny.one", "p!", "q!"]
GROUPS = ["g1", "g2"]


def queue_of(channel: str) -> str:
    return channel.split("!", 1)[0] + "!" if "!" in channel else channel


payloads = st.one_of(
    st.text(max_size=4), st.binary(max_size=4), st.integers(-(2**63), 2**64 - 1), st.none()
)
# Jumps short of, exactly at and past the message and group expiries.
jumps = st.one_of(
    st.sampled_from([0.0, 0.5, EXPIRY - 0.001, EXPIRY, EXPIRY + 0.001, GROUP_EXPIRY, 100.0]),
    st.floats(min_value=0, max_value=3 * GROUP_EXPIRY, allow_nan=False),
)


class LayerMachine(RuleBasedStateMachine):
    """Model: per-queue lists of ``(id, channel, message, expires)``."""

    entry: LayerEntry  # set by the per-layer subclass

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.layer = self.entry.build(self.clock, **CONFIG)
        self.queues: dict[str, list[tuple[int, str, dict, float]]] = {q: [] for q in CAPACITY}
        self.full: dict[str, int] = dict.fromkeys(CAPACITY, 0)
        self.groups: dict[str, dict[str, float]] = {g: {} for g in GROUPS}
        self.delivered: set[tuple[int, str]] = set()
        self.ids = itertools.count()

    def teardown(self) -> None:
        self.entry.close(self.layer)

    # -- model helpers -------------------------------------------------------

    def live(self, queue: str) -> list[tuple[int, str, dict, float]]:
        """Drop the model's expired messages (deliverable only while now < expires)."""
        now = self.clock()
        self.queues[queue] = [m for m in self.queues[queue] if m[3] > now]
        return self.queues[queue]

    def live_members(self, group: str) -> list[str]:
        cutoff = self.clock() - GROUP_EXPIRY
        members = self.groups[group]
        for channel in [c for c, added in members.items() if added <= cutoff]:
            del members[channel]
        return list(members)

    def model_push(self, channel: str, message: dict) -> bool:
        queue = queue_of(channel)
        items = self.live(queue)
        if len(items) >= CAPACITY[queue]:
            self.full[queue] += 1
            return False
        snapshot = {"id": message["id"], "payload": message["payload"],
                    "nested": {"list": [message["payload"]]}}
        items.append((message["id"], channel, snapshot, self.clock() + EXPIRY))
        return True

    def check_received(self, got: tuple, names: list[str]) -> None:
        channel, message = got
        queues = list(dict.fromkeys(queue_of(n) if n.endswith("!") else n for n in names))
        heads = {q: self.live(q)[0] for q in queues if self.live(q)}
        if channel is None:
            assert message is None
            assert not heads, f"receive({names}) returned nothing but the model holds {heads}"
            return
        # A group send puts one message id on several channels: a delivery
        # is (id, channel), and each may happen at most once.
        assert (message["id"], channel) not in self.delivered, f"{message} delivered twice"
        queue = queue_of(channel)
        assert queue in heads, f"got {channel!r} from {names}, but the model's {queue!r} is empty"
        head_id, head_channel, head_message, _ = heads[queue]
        assert (message["id"], channel) == (head_id, head_channel), (
            f"FIFO broken on {queue!r}: got {message} on {channel!r}, expected {head_message}"
        )
        assert message == head_message
        self.delivered.add((message["id"], channel))
        self.queues[queue].pop(0)

    def message(self, payload: object) -> dict:
        return {"id": next(self.ids), "payload": payload, "nested": {"list": [payload]}}

    @staticmethod
    def mutate(message: dict) -> None:
        """Change the sender's object after sending: queued copies must not change."""
        message["payload"] = "mutated after send"
        message["nested"]["list"].append("mutated after send")

    # -- rules ---------------------------------------------------------------

    @initialize()
    def starts_empty(self) -> None:
        assert self.layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 0}

    @rule(channel=st.sampled_from(SEND_NAMES), payload=payloads)
    def send(self, channel: str, payload: object) -> None:
        message = self.message(payload)
        expected = self.model_push(channel, message)
        try:
            self.layer.send(channel, message)
            sent = True
        except self.layer.ChannelFull:
            sent = False
        assert sent == expected, f"send to {channel!r}: layer sent={sent}, model sent={expected}"
        self.mutate(message)

    @rule(name=st.sampled_from(RECEIVE_NAMES))
    def receive_one(self, name: str) -> None:
        self.check_received(self.layer.receive([name]), [name])

    @rule(names=st.lists(st.sampled_from(RECEIVE_NAMES), min_size=2, max_size=5))
    def receive_several(self, names: list[str]) -> None:
        self.check_received(self.layer.receive(names), names)

    @rule(seconds=jumps)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(SEND_NAMES))
    def group_add(self, group: str, channel: str) -> None:
        self.layer.group_add(group, channel)
        self.groups[group].pop(channel, None)
        self.groups[group][channel] = self.clock()

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(SEND_NAMES))
    def group_discard(self, group: str, channel: str) -> None:
        self.layer.group_discard(group, channel)
        self.groups[group].pop(channel, None)

    @rule(group=st.sampled_from(GROUPS), payload=payloads)
    def send_group(self, group: str, payload: object) -> None:
        message = self.message(payload)
        for channel in self.live_members(group):
            self.model_push(channel, message)
        self.layer.send_group(group, message)  # never raises ChannelFull
        self.mutate(message)

    @precondition(lambda self: any(self.queues.values()) or any(self.full.values()))
    @rule()
    def flush(self) -> None:
        self.layer.flush()
        self.queues = {q: [] for q in CAPACITY}
        self.full = dict.fromkeys(CAPACITY, 0)
        self.groups = {g: {} for g in GROUPS}

    # -- checks --------------------------------------------------------------
    # Rules, not invariants: reading statistics or members makes a layer drop
    # what has expired, and running that after every step would hide a layer
    # that delivers an expired message or sends to an expired member.

    @rule()
    def group_members_agree(self) -> None:
        for group in GROUPS:
            assert self.layer.group_channels(group) == self.live_members(group)

    @rule()
    def statistics_agree(self) -> None:
        pending = sum(len(self.live(q)) for q in CAPACITY)
        assert self.layer.global_statistics() == {
            "messages_pending": pending,
            "channel_full_count": sum(self.full.values()),
        }
        now = self.clock()
        for queue, capacity in CAPACITY.items():
            stats = self.layer.channel_statistics(queue)
            items = self.live(queue)
            age = now - (items[0][3] - EXPIRY) if items else 0.0
            assert stats["messages_pending"] == len(items), (queue, stats)
            assert stats["capacity"] == capacity, (queue, stats)
            assert stats["channel_full_count"] == self.full[queue], (queue, stats)
            assert math.isclose(stats["messages_max_age"], age, abs_tol=1e-6), (queue, stats)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_behaves_like_the_model(name: str) -> None:
    entry = LAYERS[name]
    reason = entry.unavailable()
    if reason:
        pytest.skip(f"{name} layer unavailable: {reason}")
    machine = type(f"LayerMachine_{name}", (LayerMachine,), {"entry": entry})
    run_state_machine_as_test(machine)
