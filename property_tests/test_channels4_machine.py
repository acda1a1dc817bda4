"""The layer state machine, through an async adapter, on chanlite.channels4.

Why a second machine: Channels 4's API differs from 1.x (async, one channel
per ``receive``, which waits instead of returning nothing, full
process-local names), so the adapter drives ``IPCChannelLayer`` on one
event loop and checks it against a list model of the same store: FIFO per
channel, at-most-once, capacity and ``ChannelFull``, expiry on a fake clock,
group expiry and fan-out that skips full members, flush.

A receive the model says must wait is started, run until it is parked on
the dispatcher, then cancelled: every such cancellation must lose nothing
(the messages sent afterwards are checked by later receives).

Process-local channels share one store queue per layer: receiving one
moves the messages of its siblings queued before it into the layer's
buffer, where each stays deliverable for ``expiry`` from that moment (the
model does the same, written out below).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid

import pytest

channels = pytest.importorskip("channels", reason="chanlite[channels4] is not installed")

from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chanlite.channels4 import IPCChannelLayer  # noqa: E402
from chanlite.layers.ipc import IPCChannelLayer as Store  # noqa: E402
from chanlite.testing.clock import FakeClock  # noqa: E402

EXPIRY = 10.0
GROUP_EXPIRY = 25.0
WAIT = 10.0
PLAIN = ["a", "b", "big.one"]
CAPACITY = {"a": 2, "b": 2, "big.one": 4}
PROCESS_CAPACITY = 3
GROUPS = ["g1", "g2"]

jumps = st.sampled_from([0.0, 0.5, EXPIRY - 0.001, EXPIRY, EXPIRY + 0.001, GROUP_EXPIRY, 100.0])
payloads = st.one_of(st.text(max_size=4), st.binary(max_size=4), st.integers(0, 99), st.none())


class Channels4Machine(RuleBasedStateMachine):
    """Model: store queues of ``[id, channel, expires]`` plus the layer's buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.prefix = f"c4p{os.getpid()}-{uuid.uuid4().hex[:10]}"
        config = dict(expiry=EXPIRY, group_expiry=GROUP_EXPIRY, capacity=2,
                      channel_capacity={"big.*": 4}, process_capacity=PROCESS_CAPACITY,
                      memory=4 << 20, max_message_size=64 << 10, max_channels=256,
                      max_groups=32, clock=self.clock)
        self.layer = IPCChannelLayer(prefix=self.prefix, **config)
        self.other = IPCChannelLayer(prefix=self.prefix, **config)  # "another process"
        self.loop = asyncio.new_event_loop()
        self.local = [self.run(self.layer.new_channel()) for _ in range(2)]
        self.pqueue = self.local[0].split("!")[0] + "!"
        self.queues: dict[str, list[list]] = {q: [] for q in [*PLAIN, self.pqueue]}
        self.buffers: dict[str, list[list]] = {c: [] for c in self.local}
        self.groups: dict[str, dict[str, float]] = {g: {} for g in GROUPS}
        self.ids = itertools.count()

    def teardown(self) -> None:
        try:
            self.layer.ipc.check()
        finally:
            self.layer.close_sync()
            self.other.close_sync()
            self.loop.close()
            Store.remove_prefix(self.prefix)

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, WAIT))

    # -- model ---------------------------------------------------------------

    def queue_of(self, channel: str) -> str:
        return self.pqueue if "!" in channel else channel

    def capacity(self, queue: str) -> int:
        return PROCESS_CAPACITY if queue == self.pqueue else CAPACITY[queue]

    def live(self, items: list[list]) -> list[list]:
        now = self.clock()
        items[:] = [m for m in items if m[2] > now]
        return items

    def model_push(self, channel: str, ident: int) -> bool:
        items = self.live(self.queues[self.queue_of(channel)])
        if len(items) >= self.capacity(self.queue_of(channel)):
            return False
        items.append([ident, channel, self.clock() + EXPIRY])
        return True

    def model_receive(self, channel: str) -> int | None:
        """What the layer must return, or None if it must wait."""
        if channel in self.buffers and self.live(self.buffers[channel]):
            return self.buffers[channel].pop(0)[0]
        items = self.live(self.queues[self.queue_of(channel)])
        while items:
            ident, name, _ = items.pop(0)
            if name == channel:
                return ident
            self.buffers[name].append([ident, name, self.clock() + EXPIRY])
        return None

    # -- rules ---------------------------------------------------------------

    @initialize()
    def starts_empty(self) -> None:
        assert self.layer.ipc.global_statistics()["messages_pending"] == 0

    @rule(data=st.data(), payload=payloads, via_other=st.booleans())
    def send(self, data, payload: object, via_other: bool) -> None:
        channel = data.draw(st.sampled_from(PLAIN + self.local))
        ident = next(self.ids)
        expected = self.model_push(channel, ident)
        sender = self.other if via_other else self.layer
        try:
            self.run(sender.send(channel, {"type": "m", "id": ident, "payload": payload}))
            sent = True
        except channels.exceptions.ChannelFull:
            sent = False
        assert sent == expected, f"send to {channel!r}: layer sent={sent}, model={expected}"

    @rule(data=st.data())
    def receive(self, data) -> None:
        channel = data.draw(st.sampled_from(PLAIN + self.local))
        expected = self.model_receive(channel)
        if expected is not None:
            got = self.run(self.layer.receive(channel))
            assert got["id"] == expected, f"receive({channel!r}) got {got}, model {expected}"
            return
        self.run(self._receive_must_wait(channel))

    async def _receive_must_wait(self, channel: str) -> None:
        dispatch = self.layer._dispatch
        queue = self.queue_of(channel)
        task = asyncio.ensure_future(self.layer.receive(channel))
        for _ in range(1000):
            if task.done() or dispatch.wanted.get(queue):
                break
            await asyncio.sleep(0)
        assert not task.done(), f"receive({channel!r}) returned {task.result()} but must wait"
        dispatch.wait_settled(WAIT)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:  # pragma: no cover - a failure
            raise AssertionError(f"a cancelled receive({channel!r}) returned {task.result()}")
        dispatch.wait_settled(WAIT)  # the dispatcher stopped watching the queue

    @rule(seconds=jumps)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(group=st.sampled_from(GROUPS), data=st.data())
    def group_add(self, group: str, data) -> None:
        channel = data.draw(st.sampled_from(PLAIN + self.local))
        self.run(self.layer.group_add(group, channel))
        self.groups[group].pop(channel, None)
        self.groups[group][channel] = self.clock()

    @rule(group=st.sampled_from(GROUPS), data=st.data())
    def group_discard(self, group: str, data) -> None:
        channel = data.draw(st.sampled_from(PLAIN + self.local))
        self.run(self.other.group_discard(group, channel))
        self.groups[group].pop(channel, None)

    @rule(group=st.sampled_from(GROUPS), via_other=st.booleans())
    def group_send(self, group: str, via_other: bool) -> None:
        ident = next(self.ids)
        cutoff = self.clock() - GROUP_EXPIRY
        members = self.groups[group]
        for channel in [c for c, added in members.items() if added <= cutoff]:
            del members[channel]
        for channel in members:
            self.model_push(channel, ident)
        sender = self.other if via_other else self.layer
        self.run(sender.group_send(group, {"type": "g", "id": ident}))

    @precondition(lambda self: any(self.queues.values()) or any(self.buffers.values()))
    @rule()
    def flush(self) -> None:
        self.run(self.layer.flush())
        self.queues = {q: [] for q in self.queues}
        self.buffers = {c: [] for c in self.buffers}
        self.groups = {g: {} for g in GROUPS}

    @rule()
    def members_agree(self) -> None:
        cutoff = self.clock() - GROUP_EXPIRY
        for group in GROUPS:
            live = [c for c, added in self.groups[group].items() if added > cutoff]
            assert self.layer.ipc.group_channels(group) == live


def test_channels4_layer_behaves_like_the_model() -> None:
    run_state_machine_as_test(Channels4Machine)
