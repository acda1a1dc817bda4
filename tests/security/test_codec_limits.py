"""Issue 13, item 7 (layer and codec part): limits that say the truth.

* ``max_channels`` / ``max_groups`` of the IPC layer are exactly what was
  asked, not the hash table's rounded-up room;
* a message nested deeper than the codec allows is the layer's
  ``TypeError`` on every layer, never ``RecursionError``;
* ``receive()`` drops an entry forged straight into the store (written into
  the IPC segment, or pushed with a raw Redis client) with a log line: it
  never returns a non-dict nor raises a raw msgpack error.
"""

from __future__ import annotations

import sys
import uuid

import msgpack
import pytest

from chanlite.layers.codec import MAX_DEPTH
from chanlite.layers.ipc import IPCMemoryFull
from chanlite.layers.memory import InMemoryChannelLayer

from ..layers.redis_server import SHARED_URL, shared_redis_unavailable


@pytest.fixture
def redis_layer():
    reason = shared_redis_unavailable()
    if reason:
        print(f"\nskipping the Redis part: {reason}", file=sys.stderr)
        pytest.skip(reason)
    import redis

    from chanlite.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[SHARED_URL], prefix=f"chanlite-sec-{uuid.uuid4().hex[:12]}")
    raw = redis.Redis.from_url(SHARED_URL)
    yield layer, raw
    layer.flush()
    layer.close()
    left = list(raw.scan_iter(match=layer.prefix + "*"))
    raw.close()
    assert not left, f"left keys behind: {left[:5]}"


def _nested(depth: int, kind: type) -> dict:
    inner: object = "leaf"
    for _ in range(depth - 1):
        inner = {"d": inner} if kind is dict else [inner]
    return {"top": inner}


def _layers(make_ipc, redis_layer=None):
    layers = [InMemoryChannelLayer(), make_ipc()]
    if redis_layer is not None:
        layers.append(redis_layer[0])
    return layers


def _check_depth_limit(layer) -> None:
    layer.send("ok", _nested(MAX_DEPTH, dict))  # the documented depth is fine
    assert layer.receive(["ok"])[1] == _nested(MAX_DEPTH, dict)
    for depth in (MAX_DEPTH + 1, 600, 20_000):  # 600: past msgpack's own 511 limit
        for kind in (dict, list):
            with pytest.raises(TypeError, match=f"nested more than {MAX_DEPTH}"):
                layer.send("deep", _nested(depth, kind))
            with pytest.raises(TypeError, match=f"nested more than {MAX_DEPTH}"):
                layer.send_group("g", _nested(depth, kind))
    assert layer.receive(["deep"]) == (None, None)


def test_too_deep_a_message_is_a_type_error_on_memory_and_ipc(make_ipc):
    for layer in _layers(make_ipc):
        _check_depth_limit(layer)


def test_too_deep_a_message_is_a_type_error_on_redis(redis_layer):
    _check_depth_limit(redis_layer[0])


def test_max_channels_and_max_groups_are_what_was_asked(make_ipc):
    layer = make_ipc(max_channels=10, max_groups=5)
    info = layer.segment_info()
    assert (info["max_channels"], info["max_groups"]) == (10, 5)
    for i in range(10):
        layer.send(f"c{i}", {})
    with pytest.raises(IPCMemoryFull, match="already holds 10 channels.*max_channels"):
        layer.send("c10", {})
    for i in range(5):
        layer.group_add(f"g{i}", "c0")
    with pytest.raises(IPCMemoryFull, match="already holds 5 groups.*max_groups"):
        layer.group_add("g5", "c0")
    layer.check()


_FORGED = [
    b"\xc1",  # never used in msgpack
    msgpack.packb([1, 2, 3]),  # valid msgpack, not a dict
    msgpack.packb("text"),
    msgpack.packb({"a": 1})[:-1],  # truncated
    msgpack.packb({"a": 1}) + b"\x00",  # trailing bytes
    msgpack.packb({1: "int key"}),
    msgpack.packb({"e": msgpack.ExtType(5, b"x")}),  # an extension type
    b"\x91" * 100_000 + b"\x80",  # nested 100 000 lists deep
    b"",
]


def test_forged_ipc_entries_are_dropped_with_a_log_line(make_ipc, caplog):
    layer = make_ipc(capacity=100)
    store = layer._store
    for data in _FORGED:  # written straight into the segment, as a forger would
        key, h = layer._key("f")
        layer._locked("push", key, h, b"", data, layer.clock() + 60, layer.clock(), 100)
    key, h = layer._key("p!")
    layer._locked("push", key, h, b"p!\xff\xfe", msgpack.packb({"ok": "name"}),
                  layer.clock() + 60, layer.clock(), 100)
    layer.send("f", {"real": 1})
    assert layer.receive(["f"]) == ("f", {"real": 1})
    assert caplog.text.count("dropped an entry on channel 'f'") == len(_FORGED)
    channel, message = layer.receive(["p!"])  # a forged name is shown, not decoded raw
    assert channel.startswith("p!") and message == {"ok": "name"}
    for data in _FORGED:
        key, h = layer._key("b")
        layer._locked("push", key, h, b"", data, layer.clock() + 60, layer.clock(), 100)
    assert layer.receive(["b"], block=True, timeout=0.05) == (None, None)
    assert store.check()["messages"] == 0


def test_forged_redis_entries_are_dropped_with_a_log_line(redis_layer, caplog):
    layer, raw = redis_layer
    live = repr(layer.clock() + 60).encode()
    forged = [b"no separators", b"abc|x|" + msgpack.packb({}), live + b"|\xff\xfe|" +
              msgpack.packb({})] + [live + b"||" + data for data in _FORGED]
    for channel in ("one", "two"):
        raw.rpush(f"{layer.prefix}:q:{channel}", *forged)
        layer.send(channel, {"real": channel})
    assert layer.receive(["one"]) == ("one", {"real": "one"})  # LPOP path
    assert layer.receive(["none", "two"]) == ("two", {"real": "two"})  # script path
    assert caplog.text.count("dropped a malformed item") == 2 * 3
    assert caplog.text.count("dropped an entry on channel") == 2 * len(_FORGED)
    raw.rpush(f"{layer.prefix}:q:three", *forged)
    assert layer.receive(["three"], block=True, timeout=0.2) == (None, None)  # BLPOP path
    assert layer.global_statistics()["messages_pending"] == 0
