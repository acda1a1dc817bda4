"""Channels 4's layer-behaviour expectations, run on chanlite.channels4.

The cases follow what Channels' own in-memory layer tests and
channels_redis's core tests expect of a layer (send/receive, groups,
capacity -> ChannelFull, expiry, flush, process-local channels), plus what
this layer promises on top: a waiting receive holds no thread of its own
and blocks nothing, and a cancelled receive loses no message.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid

import pytest
from channels.exceptions import ChannelFull

from chanlite.channels4 import IPCChannelLayer
from chanlite.layers.ipc import IPCChannelLayer as Store
from chanlite.testing.clock import FakeClock

WAIT = 5.0  # bound on every wait below: a hang fails with a timeout, not forever


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def make():
    built: list[IPCChannelLayer] = []
    prefix = f"c4t{os.getpid()}-{uuid.uuid4().hex[:10]}"

    def make(**config) -> IPCChannelLayer:
        layer = IPCChannelLayer(prefix=prefix, memory=4 << 20, max_message_size=64 << 10, **config)
        built.append(layer)
        return layer

    yield make
    for layer in built:
        layer.close_sync()
    Store.remove_prefix(prefix)


async def parked(layer: IPCChannelLayer, task: asyncio.Task, queue: str) -> None:
    """Run the loop until ``task`` waits on ``queue`` (bounded)."""
    for _ in range(1000):
        if task.done() or layer._dispatch.wanted.get(queue):
            break
        await asyncio.sleep(0)
    assert not task.done(), f"receive returned {task.result()!r} with nothing queued"
    layer._dispatch.wait_settled(WAIT)


def test_send_receive(make):
    layer = make()

    async def go():
        message = {"type": "test.message", "text": "Ahoy-hoy!", "list": [1, b"x"]}
        await layer.send("test-channel-1", message)
        message["text"] = "changed after send"
        assert await layer.receive("test-channel-1") == {
            "type": "test.message", "text": "Ahoy-hoy!", "list": [1, b"x"]}

    run(go())


def test_fifo_and_two_layers_share_the_store(make):
    one, two = make(), make()

    async def go():
        for i in range(5):
            await one.send("fifo", {"type": "n", "i": i})
        assert [(await two.receive("fifo"))["i"] for _ in range(5)] == list(range(5))

    run(go())


def test_process_local_channels(make):
    layer = make()

    async def go():
        a = await layer.new_channel()
        b = await layer.new_channel()
        other = await layer.new_channel(prefix="other.")
        assert a.startswith("specific.") and "!" in a and a != b
        assert other.startswith("other.")
        assert a.split("!")[0] == b.split("!")[0]  # one queue per layer (process)
        await layer.send(b, {"type": "for.b"})
        await layer.send(a, {"type": "for.a"})
        # a's receive pops b's message first and keeps it for b
        assert await layer.receive(a) == {"type": "for.a"}
        assert await layer.receive(b) == {"type": "for.b"}

    run(go())


def test_process_local_channels_of_another_layer(make):
    """A message to another process's channel is received there, not here."""
    here, there = make(), make()

    async def go():
        mine = await here.new_channel()
        theirs = await there.new_channel()
        assert mine.split("!")[0] != theirs.split("!")[0]
        await here.send(theirs, {"type": "hello"})
        assert await there.receive(theirs) == {"type": "hello"}

    run(go())


def test_invalid_names_and_messages(make):
    layer = make()

    async def go():
        with pytest.raises(TypeError):
            await layer.send("bad name", {"type": "x"})
        with pytest.raises(TypeError):
            await layer.group_add("bad group!", "chan")
        with pytest.raises(TypeError):
            await layer.send("chan", ["not", "a", "dict"])
        with pytest.raises(TypeError):
            await layer.send("chan", {"__asgi_channel__": "x"})
        with pytest.raises(TypeError):
            await layer.receive("x" * 100)

    run(go())


def test_capacity_raises_channels_channelfull(make):
    layer = make(capacity=2, channel_capacity={"big*": 3})

    async def go():
        await layer.send("small", {"type": "1"})
        await layer.send("small", {"type": "2"})
        with pytest.raises(ChannelFull):
            await layer.send("small", {"type": "3"})
        for i in range(3):
            await layer.send("bigger", {"type": str(i)})
        with pytest.raises(ChannelFull):
            await layer.send("bigger", {"type": "full"})
        assert await layer.receive("small") == {"type": "1"}
        await layer.send("small", {"type": "room again"})

    run(go())


def test_group_send_skips_full_members(make):
    layer = make(capacity=1)

    async def go():
        await layer.group_add("g", "full-one")
        await layer.group_add("g", "free-one")
        await layer.send("full-one", {"type": "filler"})
        await layer.group_send("g", {"type": "to.group"})  # no ChannelFull
        assert await layer.receive("free-one") == {"type": "to.group"}
        assert await layer.receive("full-one") == {"type": "filler"}

    run(go())


def test_expiry(make):
    clock = FakeClock()
    layer = make(expiry=10, clock=clock)

    async def go():
        await layer.send("exp", {"type": "old"})
        clock.advance(10.5)
        await layer.send("exp", {"type": "new"})
        assert await layer.receive("exp") == {"type": "new"}

    run(go())


def test_groups(make):
    clock = FakeClock()
    layer = make(group_expiry=100, clock=clock)

    async def go():
        a, b, c = (await layer.new_channel() for _ in range(3)) if False else (
            await layer.new_channel(), await layer.new_channel(), await layer.new_channel())
        await layer.group_add("room", a)
        await layer.group_add("room", b)
        await layer.group_add("room", c)
        await layer.group_discard("room", b)
        await layer.group_discard("room", "never-added")
        await layer.group_send("room", {"type": "hi"})
        assert await layer.receive(a) == {"type": "hi"}
        assert await layer.receive(c) == {"type": "hi"}
        assert layer._dispatch.buffer.get(b) is None
        assert layer.ipc.channel_statistics(b.split("!")[0] + "!")["messages_pending"] == 0
        clock.advance(101)  # group_expiry: memberships lapse
        await layer.group_add("room", c)
        await layer.group_send("room", {"type": "later"})
        assert await layer.receive(c) == {"type": "later"}
        assert layer.ipc.group_channels("room") == [c]

    run(go())


def test_flush(make):
    layer = make()

    async def go():
        await layer.send("f", {"type": "x"})
        await layer.group_add("g", "f")
        await layer.flush()
        await layer.group_send("g", {"type": "after flush"})
        assert layer.ipc.global_statistics()["messages_pending"] == 0

    run(go())


def test_waiting_receive_blocks_nothing_and_holds_no_thread(make):
    """200 waiting receives: at most one more thread, the loop keeps running."""
    layer = make()
    before = threading.active_count()

    async def go():
        channels = [await layer.new_channel() for _ in range(100)] + [
            f"plain{i}" for i in range(100)
        ]
        tasks = [asyncio.create_task(layer.receive(c)) for c in channels]
        ticks = 0
        for _ in range(20):  # the loop is free while they wait
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20 and not any(t.done() for t in tasks)
        assert threading.active_count() <= before + 1
        for i, c in enumerate(reversed(channels)):
            await layer.send(c, {"type": "m", "i": i})
        got = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert [m["i"] for m in got] == list(reversed(range(200)))

    run(go())


def test_cancelled_receive_loses_no_message(make):
    layer = make()

    async def go():
        channel = await layer.new_channel()
        for name in (channel, "plain"):
            queue = name.split("!")[0] + "!" if "!" in name else name
            task = asyncio.create_task(layer.receive(name))
            await parked(layer, task, queue)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await layer.send(name, {"type": "after.cancel"})
            assert await asyncio.wait_for(layer.receive(name), WAIT) == {"type": "after.cancel"}

    run(go())


def test_receive_cancelled_after_its_message_arrived_gives_it_back(make):
    """The future got the message, then the task was cancelled before it ran."""
    layer = make()

    async def go():
        channel = await layer.new_channel()
        queue = channel.split("!")[0] + "!"
        task = asyncio.create_task(layer.receive(channel))
        await parked(layer, task, queue)
        await layer.send(channel, {"type": "first"})
        await layer.send(channel, {"type": "second"})
        future = next(iter(layer._dispatch.futures[channel]))
        deadline = time.monotonic() + WAIT
        while not future.done():  # sleep(0): the task must not run in between
            assert time.monotonic() < deadline, "the dispatcher never delivered"
            await asyncio.sleep(0)
        task.cancel()  # before the task ran with its result
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(layer.receive(channel), WAIT) == {"type": "first"}
        assert await asyncio.wait_for(layer.receive(channel), WAIT) == {"type": "second"}

    run(go())


def test_close_puts_undelivered_messages_back(make):
    layer, other = make(), make()

    async def go():
        task = asyncio.create_task(layer.receive("work"))
        await parked(layer, task, "work")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # stale watch: the dispatcher may pop this before it notices the cancel
        await layer.send("work", {"type": "job"})
        await layer.close()
        assert await asyncio.wait_for(other.receive("work"), WAIT) == {"type": "job"}
        assert other.ipc.global_statistics()["messages_pending"] == 0  # no wake-up left

    run(go())


def test_cross_process_receive(make):
    """A forked process sends; the awaiting coroutine here gets it."""
    layer = make()

    async def go():
        channel = await layer.new_channel()
        task = asyncio.create_task(layer.receive(channel))
        await parked(layer, task, channel.split("!")[0] + "!")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                # (no asyncio here: the fork happened inside a running loop)
                store = Store(prefix=layer.prefix, max_message_size=64 << 10)
                store.send(channel, {"type": "from.child", "pid": os.getpid()})
                code = 0
            finally:
                os._exit(code)
        try:
            assert (await asyncio.wait_for(task, WAIT)) == {"type": "from.child", "pid": pid}
        finally:
            assert os.waitpid(pid, 0)[1] == 0, "the child could not send"

    run(go())


def test_waiters_on_one_channel_are_served_in_order(make):
    """Two coroutines await one channel: the first gets the first message,
    and a newcomer never takes a message counted for an earlier waiter."""
    layer = make()

    async def go():
        channel = await layer.new_channel()
        queue = channel.split("!")[0] + "!"
        first = asyncio.create_task(layer.receive(channel))
        await parked(layer, first, queue)
        second = asyncio.create_task(layer.receive(channel))
        for _ in range(1000):
            if layer._dispatch.wanted.get(queue) == 2:
                break
            await asyncio.sleep(0)
        await layer.send(channel, {"type": "m", "i": 1})
        third = asyncio.create_task(layer.receive(channel))  # a newcomer
        await layer.send(channel, {"type": "m", "i": 2})
        await layer.send(channel, {"type": "m", "i": 3})
        got = await asyncio.wait_for(asyncio.gather(first, second, third), WAIT)
        assert [m["i"] for m in got] == [1, 2, 3]

    run(go())


def test_sequential_receives_skip_the_dispatcher(make):
    """Once every waiter is served, the next receive pops directly (no thread hop)."""
    layer = make()

    async def go():
        first = asyncio.create_task(layer.receive("seq"))
        await parked(layer, first, "seq")
        await layer.send("seq", {"type": "m", "i": 0})
        assert (await asyncio.wait_for(first, WAIT))["i"] == 0
        layer._dispatch.wait_settled(WAIT)  # it stopped watching "seq"
        assert "seq" not in layer._dispatch.watching
        for i in range(1, 50):
            await layer.send("seq", {"type": "m", "i": i})
            assert (await layer.receive("seq"))["i"] == i
        assert "seq" not in layer._dispatch.watching

    run(go())
