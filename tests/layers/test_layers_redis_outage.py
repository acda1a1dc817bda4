"""One shard of three down: the others keep working, the down one is named,
group sends degrade instead of failing, and recovery needs nobody.

Three throw-away ``redis-server`` processes (skipped, printing why, where
the binary is absent).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from .redis_server import RedisServer, private_servers, redis_server_missing, wait_for

_REASON = redis_server_missing()
if _REASON:
    print(f"\nskipping Redis shard-outage tests: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

from chanlite.layers.redis import RedisChannelLayer, RedisUnavailable  # noqa: E402
from chanlite.layers.redis_ops import health_check  # noqa: E402

from .test_layers_redis_multihost import channels_on_each_host  # noqa: E402


@pytest.fixture(scope="module")
def servers():
    with private_servers(3) as started:
        yield started


@pytest.fixture
def layer(servers):
    layer = RedisChannelLayer(
        hosts=[s.url for s in servers], prefix="outage", capacity=1000,
        socket_timeout=1.0, socket_connect_timeout=0.5,
        reconnect_backoff=0.02, reconnect_backoff_max=0.1,
    )
    yield layer
    for server in servers:
        if server.process is None:
            server.start()
    layer.flush()
    layer.close()


def test_one_shard_down_of_three(layer, servers, caplog):
    (on_a,), (on_b,), (on_c,) = channels_on_each_host(layer, servers)
    members = channels_on_each_host(layer, servers, count=3)
    # The group itself must live on a healthy shard for this test.
    group = next(f"room{i}" for i in range(1000)
                 if layer._group_host(f"room{i}").url != servers[1].url)
    for channel in sum(members, []):
        layer.group_add(group, channel)
    servers[1].kill()

    # Channels of A and C work; B's raise, naming B.
    for channel in (on_a, on_c):
        layer.send(channel, {"to": channel})
        assert layer.receive([channel]) == (channel, {"to": channel})
    with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{servers[1].port}"):
        layer.send(on_b, {})
    with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{servers[1].port}"):
        layer.receive([on_b])

    # A group send reaches A's and C's members and reports B's.
    with caplog.at_level(logging.WARNING, logger="chanlite.layers.redis"):
        layer.send_group(group, {"hello": "room"})
    for channel in members[0] + members[2]:
        assert layer.receive([channel]) == (channel, {"hello": "room"})
    b_label = servers[1].url
    assert layer.delivery_statistics()["group_members_unreachable"] == {b_label: 3}
    logged = [
        r.getMessage() for r in caplog.records if "group send could not reach" in r.getMessage()
    ]
    assert len(logged) == 1 and b_label in logged[0]
    assert all(channel in logged[0] for channel in members[1])

    # The health check says which shard is down, without raising.
    report = health_check(layer)
    assert not report["ok"]
    assert [h["ok"] for h in report["hosts"]] == [True, False, True]
    assert str(servers[1].port) in report["hosts"][1]["error"]

    # A blocking receive over A, B and C is served by A and C meanwhile.
    got: list = []
    thread = threading.Thread(
        target=lambda: got.append(layer.receive([on_b, on_c], block=True, timeout=10)))
    thread.start()
    wait_for(lambda: servers[2].client().info("clients")["blocked_clients"] >= 1,
             "the receiver to block on the live shard C")
    layer.send(on_c, {"late": 1})
    thread.join(5)
    assert got == [(on_c, {"late": 1})]

    # B comes back (empty: it kept nothing): everything works again, by itself.
    servers[1].start()
    layer.send(on_b, {"back": True})
    assert layer.receive([on_b]) == (on_b, {"back": True})
    layer.send_group(group, {"again": 1})
    for channel in sum(members, []):
        assert layer.receive([channel]) == (channel, {"again": 1})
    assert health_check(layer)["ok"]


def test_blocking_receiver_on_the_down_shard_resumes_when_it_returns(layer, servers):
    (_, ), (on_b,), _ = channels_on_each_host(layer, servers)
    servers[1].kill()
    got: list = []
    thread = threading.Thread(
        target=lambda: got.append(layer.receive([on_b], block=True, timeout=15)))
    thread.start()
    time_down = time.monotonic()
    servers[1].start()
    wait_for(lambda: servers[1].client().info("clients")["blocked_clients"] >= 1,
             "the receiver to reconnect to shard B and block there")
    layer.send(on_b, {"resumed": True})
    thread.join(5)
    assert got == [(on_b, {"resumed": True})]
    assert time.monotonic() - time_down < 10


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("chanlite_redis", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def redis_settings(servers):
    layers = {"default": {
        "BACKEND": "chanlite.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [s.url for s in servers], "prefix": "outage",
                   "socket_connect_timeout": 0.5, "socket_timeout": 1.0},
    }, "memory": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers):
        yield


def test_command_stats_health_and_prefix_flush(layer, servers, redis_settings):
    (on_a,), (on_b,), _ = channels_on_each_host(layer, servers)
    for token in ("Ab3x", "Zz9q"):
        layer.send(f"http.response!{token}", {"n": 1})  # one queue per process: "a!"
        layer.send(f"http.request.body?{token}", {"n": 1})
    layer.send(on_a, {"n": 1})
    layer.send(on_a, {"n": 2})
    layer.group_add("room", on_a)
    other = RedisChannelLayer(hosts=[s.url for s in servers], prefix="outage-other")
    other.send(on_a, {"keep": True})  # (on shard A: B is restarted below, empty)

    # A second process on the same prefix, connected to shard A.
    code = (
        "import sys; from chanlite.layers.redis import RedisChannelLayer\n"
        f"layer = RedisChannelLayer(hosts={[s.url for s in servers]!r}, prefix='outage')\n"
        f"layer.channel_statistics({on_a!r})\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    other_process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    try:
        assert other_process.stdout.readline() == "ready\n"
        stats = json.loads(run_command("--stats", "--json"))
    finally:
        other_process.communicate("", timeout=10)
    assert [s["host"] for s in stats] == [s.url for s in servers]
    assert stats[0]["processes"] == 2  # this test process and the other one
    queues: dict[str, int] = {}
    for shard in stats:
        assert shard["maxmemory_policy"] == "noeviction" and shard["connected_clients"] >= 1
        for pattern, count in shard["queues"].items():
            queues[pattern] = queues.get(pattern, 0) + count
    # Single-reader channels' tokens are grouped into one pattern.
    assert queues == {"http.response!": 2, "http.request.body?*": 2, on_a: 2}
    assert sum(s["groups"] for s in stats) == 1
    text = run_command("--stats")
    assert f"queue {on_a}: 2 queued" in text and "queue http.request.body?*: " in text

    assert run_command("--health").count("ok ") == 3
    servers[1].kill()
    with pytest.raises(CommandError, match="1 of 3 shard"):
        run_command("--health")
    assert "DOWN" in run_command("--stats")
    servers[1].start()

    with pytest.raises(CommandError, match="--flush needs --prefix"):
        run_command("--flush")
    assert "flushed prefix 'outage'" in run_command("--flush", "--prefix", "outage")
    assert all(not s["queues"] and s["groups"] == 0
               for s in json.loads(run_command("--stats", "--json")))
    assert other.receive([on_a]) == (on_a, {"keep": True})  # another prefix untouched
    other.close()
    with pytest.raises(CommandError, match="not a Redis layer"):
        run_command("--stats", "--layer", "memory")


def test_a_full_redis_is_back_pressure_naming_the_host(caplog):
    """maxmemory reached under noeviction: send raises ChannelFull saying the
    server is out of memory (an interface server answers 503); a group send
    skips the members there with a log line; receives drain it."""
    server = RedisServer(extra_args=["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
    server.start()
    try:
        layer = RedisChannelLayer(hosts=[server.url], prefix="oom", capacity=10**6)
        layer.group_add("room", "big")
        with pytest.raises(layer.ChannelFull, match=f"127.0.0.1:{server.port}/0 is out of memory"):
            for _ in range(10_000):
                layer.send("big", {"x": b"x" * 10_000})
        with caplog.at_level(logging.WARNING, logger="chanlite.layers.redis"):
            layer.send_group("room", {"x": b"x" * 10_000})  # does not raise
        assert any("out of memory" in r.getMessage() for r in caplog.records)
        drained = 0
        while layer.receive(["big"]) != (None, None):
            drained += 1
        assert drained > 100
        layer.send("big", {"after": "drain"})
        assert layer.receive(["big"]) == ("big", {"after": "drain"})
        layer.close()
    finally:
        server.stop()
