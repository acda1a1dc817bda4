"""Batched receive of process-specific queues and one-round-trip group sends
(Redis layer, real server at 127.0.0.1:6379, a unique key prefix per test).

The shared semantics with batching on are also proved by the property state
machine (property_tests/, with a Redis-only machine adding close and
buffered-expiry rules); these tests pin what is specific: how many round
trips, what stays in Redis, what the held record says, and the failure
modes (close, flush, fork, stale group caches).
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from chanlite.testing.clock import FakeClock

from .redis_server import SHARED_URL, shared_redis_unavailable

_REASON = shared_redis_unavailable()
if _REASON:
    print(f"\nskipping Redis batch tests: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

import redis  # noqa: E402

from chanlite.layers.redis import RedisChannelLayer  # noqa: E402
from chanlite.layers.redis_hosts import Host  # noqa: E402


@pytest.fixture
def make_layer(raw: redis.Redis, clock: FakeClock):
    """Layers on the shared server under one unique prefix per test (two
    layer objects stand for two processes); none may leave a key behind."""
    prefix = f"chanlite-batch-{uuid.uuid4().hex[:12]}"
    layers: list[RedisChannelLayer] = []

    def make(**config) -> RedisChannelLayer:
        config.setdefault("prefix", prefix)
        config.setdefault("clock", clock)
        layer = RedisChannelLayer(hosts=[SHARED_URL], **config)
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        layer.flush()
        layer.close()
    left = list(raw.scan_iter(match=prefix + "*"))
    assert not left, f"flush() left keys behind: {left[:5]}"


@pytest.fixture
def round_trips(monkeypatch):
    """Count round trips to Redis: every command or pipeline goes through
    ``Host.execute`` or ``Host.execute_packed`` (``execute_after`` uses one
    of them); each call is one round trip, named by its last command."""
    calls: list[str] = []
    execute, execute_packed = Host.execute, Host.execute_packed

    def counted_execute(self, *args):
        calls.append(str(args[0]))
        return execute(self, *args)

    def counted_packed(self, before, command):
        calls.append(command.split(b"\r\n")[2].decode())
        return execute_packed(self, before, command)

    monkeypatch.setattr(Host, "execute", counted_execute)
    monkeypatch.setattr(Host, "execute_packed", counted_packed)
    return calls


def test_a_process_queue_is_received_in_one_round_trip_per_batch(make_layer, raw, round_trips):
    layer = make_layer(receive_batch=50)
    for i in range(120):
        layer.send(f"reply!c{i % 3}", {"i": i})
    layer.receive(["warm!"])  # loads the script (a NOSCRIPT retry is not the point here)
    round_trips.clear()
    got = [layer.receive(["reply!"]) for _ in range(120)]
    assert [message["i"] for _, message in got] == list(range(120)), "FIFO across batches"
    assert [channel for channel, _ in got][:3] == ["reply!c0", "reply!c1", "reply!c2"]
    assert len(round_trips) == 3, f"120 messages in batches of 50: {round_trips}"
    assert layer.receive(["reply!"]) == (None, None)


def test_buffered_messages_still_count_against_capacity(make_layer, raw):
    layer = make_layer(process_capacity=5)
    for i in range(5):
        layer.send("reply!a", {"i": i})
    assert layer.receive(["reply!"])[1] == {"i": 0}
    assert raw.llen(f"{layer.prefix}:q:reply!") == 0, "the batch took all five"
    layer.send("reply!a", {"i": 5})  # 4 held + 0 queued: one slot free
    with pytest.raises(layer.ChannelFull):
        layer.send("reply!a", {"i": 6})
    stats = layer.channel_statistics("reply!")
    assert stats["messages_pending"] == 5 and stats["channel_full_count"] == 1


def test_another_process_sees_a_stale_count_only_on_the_safe_side(make_layer):
    reader, sender = make_layer(process_capacity=4), make_layer(process_capacity=4)
    for i in range(4):
        sender.send("reply!a", {"i": i})
    reader.receive(["reply!"])  # holds 3, recorded as 3
    reader.receive(["reply!"])  # holds 2, still recorded as 3 (no round trip)
    sender.send("reply!a", {"i": 4})  # 3 recorded + 0 queued < 4
    with pytest.raises(sender.ChannelFull):
        sender.send("reply!a", {"i": 5})  # truly 3 in flight, but refused: early, never over
    assert reader.channel_statistics("reply!")["messages_pending"] == 3  # corrected by the reader
    sender.send("reply!a", {"i": 5})  # now accepted: 2 held + 1 queued < 4
    assert [reader.receive(["reply!"])[1]["i"] for _ in range(4)] == [2, 3, 4, 5]


def test_a_buffered_message_that_expires_is_dropped_not_served(make_layer, clock):
    layer = make_layer(expiry=10)
    layer.send("reply!a", {"i": 0})
    clock.advance(5)
    layer.send("reply!a", {"i": 1})
    assert layer.receive(["reply!"])[1] == {"i": 0}  # {"i": 1} is buffered now
    clock.advance(5.5)  # {"i": 1} expires at 15
    assert layer.channel_statistics("reply!")["messages_pending"] == 1
    clock.advance(5)
    assert layer.channel_statistics("reply!")["messages_pending"] == 0
    assert layer.receive(["reply!"]) == (None, None)
    assert layer.global_statistics()["messages_pending"] == 0


def test_flush_clears_the_buffer(make_layer, raw):
    layer = make_layer()
    for i in range(3):
        layer.send("reply!a", {"i": i})
    layer.receive(["reply!"])
    assert layer.global_statistics()["messages_pending"] == 2, "held items are pending"
    layer.flush()
    assert layer.receive(["reply!"]) == (None, None)
    assert layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 0}
    assert not list(raw.scan_iter(match=layer.prefix + "*"))


def test_close_returns_buffered_messages_to_the_queue_in_order(make_layer, raw):
    layer = make_layer()
    for i in range(4):
        layer.send(f"reply!c{i}", {"i": i})
    assert layer.receive(["reply!"])[1] == {"i": 0}
    layer.close()
    assert raw.llen(f"{layer.prefix}:q:reply!") == 3
    assert raw.get(f"{layer.prefix}:h:reply!") is None, "nothing held any more"
    later = make_layer()
    assert [later.receive(["reply!"]) for _ in range(3)] == [
        ("reply!c1", {"i": 1}), ("reply!c2", {"i": 2}), ("reply!c3", {"i": 3})]


def test_shared_channels_are_popped_one_at_a_time(make_layer, raw, round_trips):
    layer = make_layer()
    for i in range(10):
        layer.send("work", {"i": i})
    assert layer.receive(["work"])[1] == {"i": 0}
    assert raw.llen(f"{layer.prefix}:q:work") == 9, "another worker may take the other nine"
    assert layer.receive(["work"], block=True, timeout=1)[1] == {"i": 1}


def test_several_queues_with_a_buffer_keep_their_rotation(make_layer):
    layer = make_layer()
    for i in range(4):
        layer.send("reply!a", {"q": "reply", "i": i})
        layer.send("work", {"q": "work", "i": i})
    layer.receive(["reply!"])  # three more buffered
    served = [layer.receive(["work", "reply!"])[1]["q"] for _ in range(4)]
    assert sorted(served) == ["reply", "reply", "work", "work"], served


def test_receive_batch_one_turns_batching_off(make_layer, raw):
    layer = make_layer(receive_batch=1)
    for i in range(3):
        layer.send("reply!a", {"i": i})
    layer.receive(["reply!"])
    assert raw.llen(f"{layer.prefix}:q:reply!") == 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10"])
def test_receive_batch_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="receive_batch must be an int >= 1"):
        RedisChannelLayer(hosts=[SHARED_URL], receive_batch=bad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_serve_its_parents_buffer(make_layer):
    layer = make_layer()
    for i in range(3):
        layer.send("reply!a", {"i": i})
    layer.receive(["reply!"])
    pid = os.fork()
    if pid == 0:  # child: exit status says what it saw
        os._exit(0 if not layer._buffers else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child inherited the parent's buffer"
    assert [layer.receive(["reply!"])[1]["i"] for _ in range(2)] == [1, 2]


# group sends ---------------------------------------------------------------


def test_a_group_send_is_one_round_trip_while_members_are_unchanged(make_layer, round_trips):
    layer = make_layer()
    members = [layer.new_channel("reply!") for _ in range(20)] + ["work"]
    for member in members:
        layer.group_add("room", member)
    layer.send_group("room", {"n": 0})  # fetches the members (2 round trips)
    layer.send_group("room", {"n": 0})  # loads PUSH_GROUP into the server
    round_trips.clear()
    layer.send_group("room", {"n": 1})
    assert round_trips == ["EVALSHA"], round_trips
    got = [layer.receive(["reply!"]) for _ in range(60)]
    assert sorted(channel for channel, _ in got) == sorted(members[:20] * 3)
    assert [message["n"] for _, message in got[:20]] == [0] * 20
    assert [layer.receive(["work"])[1]["n"] for _ in range(3)] == [0, 0, 1]


def test_a_cached_group_follows_changes_made_by_another_process(make_layer, clock):
    sender, other = make_layer(group_expiry=100), make_layer(group_expiry=100)
    sender.group_add("room", "a")
    sender.send_group("room", {"n": 0})  # caches {a}
    other.group_add("room", "b")
    other.group_discard("room", "a")
    sender.send_group("room", {"n": 1})
    assert sender.receive(["a"])[1] == {"n": 0}
    assert sender.receive(["a"]) == (None, None), "a left the group"
    assert sender.receive(["b"])[1] == {"n": 1}
    clock.advance(101)  # b's membership expires; nobody changed the group
    sender.send_group("room", {"n": 2})
    assert sender.receive(["b"]) == (None, None), "sent to an expired member"
    assert sender.group_channels("room") == []


def test_a_group_send_fills_a_shared_process_queue_up_to_capacity(make_layer):
    layer = make_layer(process_capacity=3)
    members = [layer.new_channel("reply!") for _ in range(5)]
    for member in members:
        layer.group_add("room", member)
    layer.send_group("room", {"n": 0})
    got = [layer.receive(["reply!"])[0] for _ in range(4)]
    assert got == members[:3] + [None], "the first three in join order fit"
    assert layer.channel_statistics("reply!")["channel_full_count"] == 2


def test_a_cached_group_send_reloads_its_script_after_a_server_lost_it():
    """The pre-packed PUSH_GROUP command has its own NOSCRIPT path: a server
    that restarted (here: SCRIPT FLUSH on a private server) gets the script
    again, and the send happens exactly once."""
    from .redis_server import RedisServer, redis_server_missing

    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    server = RedisServer().start()
    try:
        layer = RedisChannelLayer(hosts=[server.url], prefix="batch-noscript")
        layer.group_add("room", "a")
        layer.send_group("room", {"n": 0})  # caches the members
        server.client().script_flush()
        layer.send_group("room", {"n": 1})  # cached plan: NOSCRIPT, load, run once
        assert [layer.receive(["a"])[1] for _ in range(3)] == [{"n": 0}, {"n": 1}, None]
        layer.close()
    finally:
        server.stop()
