"""The Redis channel layer against a real Redis (127.0.0.1:6379).

Every test works under its own key prefix and checks that it leaves no key
behind; nothing here flushes the shared database. Tests that stop or
restart a server start their own ``redis-server`` on a free port. The
shared semantics (FIFO, expiry, capacity, groups, statistics) are also
proved by the property state machine in ``property_tests/``; these tests
cover what is Redis-specific: atomicity under concurrency, key TTLs, prefix
isolation, blocking without polling, failures and reconnects.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
import uuid

import pytest

from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock

from .redis_server import (
    SHARED_URL,
    RedisServer,
    free_port,
    redis_server_missing,
    shared_redis_unavailable,
)

_REASON = shared_redis_unavailable()
if _REASON:
    print(f"\nskipping Redis layer tests: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

import redis  # noqa: E402  (after the skip: redis-py is an optional extra)

from chanlite.layers.redis import RedisChannelLayer, RedisUnavailable  # noqa: E402


def unique_prefix() -> str:
    return f"chanlite-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_layer(raw: redis.Redis, clock: FakeClock):
    """Build layers on the shared server; each must leave no key behind."""
    layers: list[RedisChannelLayer] = []

    def make(**config) -> RedisChannelLayer:
        config.setdefault("prefix", unique_prefix())
        config.setdefault("clock", clock)
        layer = RedisChannelLayer(hosts=[SHARED_URL], **config)
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        layer.flush()
        layer.close()
        left = list(raw.scan_iter(match=layer.prefix + "*"))
        assert not left, f"flush() left keys behind: {left[:5]}"


@pytest.fixture
def layer(make_layer) -> RedisChannelLayer:
    return make_layer()


@pytest.fixture
def private_server():
    """A throw-away redis-server we may stop and restart."""
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    server = RedisServer().start()
    yield server
    server.stop()


# --------------------------------------------------------------- basics


def test_round_trip_keeps_types_and_separator_bytes(layer):
    message = {"bytes": b"\x00|a|b|", "text": "|é🎉", "nested": [{"k": b"|"}], "n": None}
    layer.send("chat", message)
    layer.send("reply!abc", {"x": 1})
    assert layer.receive(["chat"]) == ("chat", message)
    assert layer.receive(["reply!"]) == ("reply!abc", {"x": 1})
    assert layer.receive(["chat", "reply!"]) == (None, None)


def test_fifo_and_process_specific_share_one_queue(layer):
    for i in range(50):
        layer.send(f"p!{'xy'[i % 2]}", {"i": i})
    got = [layer.receive(["p!"]) for _ in range(50)]
    assert [m["i"] for _, m in got] == list(range(50))
    assert [c for c, _ in got[:2]] == ["p!x", "p!y"]
    assert layer.channel_statistics("p!")["messages_pending"] == 0


def test_capacity_check_and_push_are_atomic_across_threads(make_layer):
    layer = make_layer(capacity=50)
    accepted = []
    refused = []

    def sender(n: int) -> None:
        for i in range(20):
            try:
                layer.send("busy", {"n": n, "i": i})
                accepted.append((n, i))
            except layer.ChannelFull:
                refused.append((n, i))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(accepted) == 50 and len(refused) == 110
    stats = layer.channel_statistics("busy")
    assert stats["messages_pending"] == 50 and stats["channel_full_count"] == 110


def test_expiry_follows_the_layer_clock_and_keys_have_ttls(make_layer, raw, clock):
    layer = make_layer(expiry=30, group_expiry=100, ttl_margin=60)
    layer.send("old", {"i": 1})
    layer.group_add("g", "old")
    queue_ttl = raw.ttl(f"{layer.prefix}:q:old")
    group_ttl = raw.ttl(f"{layer.prefix}:g:g")
    assert 30 < queue_ttl <= 90, queue_ttl  # expiry + margin: a backstop only
    assert 100 < group_ttl <= 160, group_ttl
    clock.advance(30)
    layer.send("old", {"i": 2})
    # The expired head is dropped even by a blocking receive.
    assert layer.receive(["old"], block=True, timeout=1) == ("old", {"i": 2})
    assert layer.receive(["old"], block=True, timeout=0.05) == (None, None)


def test_full_channel_frees_up_when_its_messages_expire(make_layer, clock):
    layer = make_layer(capacity=2, expiry=10)
    layer.send("c", {})
    layer.send("c", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("c", {})
    clock.advance(10)
    layer.send("c", {"fresh": True})
    assert layer.receive(["c"]) == ("c", {"fresh": True})
    assert layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 1}


def test_groups_keep_join_order_expire_and_skip_full_members(make_layer, clock):
    layer = make_layer(capacity=1, group_expiry=50)
    for name in ["z", "a", "m!1"]:
        layer.group_add("room", name)
    layer.group_add("room", "z")  # re-adding moves it to the end
    assert layer.group_channels("room") == ["a", "m!1", "z"]
    layer.send("a", {"already": "full"})
    layer.send_group("room", {"hi": 1})
    assert layer.receive(["m!"]) == ("m!1", {"hi": 1})
    assert layer.receive(["z"]) == ("z", {"hi": 1})
    assert layer.receive(["a"]) == ("a", {"already": "full"})
    assert layer.channel_statistics("a")["channel_full_count"] == 1
    layer.group_discard("room", "a")
    # observed at once, long before group expiry could remove it instead
    assert layer.group_channels("room") == ["m!1", "z"]
    layer.send_group("room", {"after": "discard"})
    assert layer.receive(["a"]) == (None, None), "a discarded member still got a group send"
    layer.group_discard("room", "not-a-member")  # discarding a stranger is a no-op
    assert layer.group_channels("room") == ["m!1", "z"]
    clock.advance(25)
    layer.group_add("room", "late")
    clock.advance(25)
    assert layer.group_channels("room") == ["late"]


def test_flush_and_statistics_stay_inside_the_prefix(make_layer, raw):
    layer = make_layer()
    outsiders = [f"{layer.prefix}-other:q:a", f"{layer.prefix}:nested:q:a", "unrelated:q:a"]
    try:
        for key in outsiders:
            raw.rpush(key, b"1e300||x")
        layer.send("a", {})
        assert layer.global_statistics()["messages_pending"] == 1
        layer.flush()
        assert layer.global_statistics()["messages_pending"] == 0
        assert all(raw.exists(key) for key in outsiders)
    finally:
        raw.delete(*outsiders)


def test_prefix_with_glob_characters_is_matched_literally(make_layer, raw):
    layer = make_layer(prefix=f"glob[*]?{uuid.uuid4().hex[:8]}")
    layer.send("a", {})
    assert layer.global_statistics()["messages_pending"] == 1
    layer.flush()
    assert not raw.exists(f"{layer.prefix}:q:a")


# ---------------------------------------------------------- blocking


def test_blocking_receive_honours_short_timeouts(private_server):
    # Redis's own BLPOP timeouts are 100 ms coarse on an idle server (a
    # private one here: traffic from others makes the shared one precise by
    # accident); the layer cancels early.
    layer = RedisChannelLayer(hosts=[private_server.url], prefix="timeouts")
    # Best of five attempts, so a loaded machine's scheduling hiccups do not
    # fail the test, while a 100 ms overshoot on every attempt still does.
    for timeout in (0.02, 0.12):
        overshoots = []
        for _ in range(5):
            start = time.monotonic()
            got = layer.receive(["nothing", "neither"], block=True, timeout=timeout)
            elapsed = time.monotonic() - start
            assert got == (None, None)
            assert elapsed >= timeout, (timeout, elapsed)
            overshoots.append(elapsed - timeout)
        assert min(overshoots) < 0.08, (timeout, overshoots)
    layer.close()


def test_blocking_receive_wakes_up_on_send_without_polling(private_server):
    layer = RedisChannelLayer(hosts=[private_server.url], prefix="wake")
    admin = private_server.client()
    got = []
    thread = threading.Thread(
        target=lambda: got.append(layer.receive(["idle", "wake"], block=True, timeout=10))
    )
    thread.start()
    eventually(lambda: admin.info("clients")["blocked_clients"] == 1, "the receiver to block",
               timeout=5)
    time.sleep(0.5)  # idle on purpose: a polling receiver would issue commands now
    calls = admin.info("commandstats")
    assert calls["cmdstat_blpop"]["calls"] == 1, calls
    sender = RedisChannelLayer(hosts=[private_server.url], prefix="wake")
    start = time.monotonic()
    sender.send("wake", {"now": 1})
    thread.join(5)
    assert not thread.is_alive(), "the blocked receiver was not woken by the send"
    assert got == [("wake", {"now": 1})]
    # Generous for a loaded machine; the no-polling proof is the BLPOP count above.
    assert time.monotonic() - start < 1.0
    for closing in (layer, sender):
        closing.flush()
        closing.close()
    admin.close()


class _Interrupted(Exception):
    pass


def test_interrupted_blocking_receive_leaves_the_connection_usable(layer):
    """A signal handler raising inside a blocked receive must not leave a
    BLPOP reply pending on the thread's connection (the next command would
    read it as its own reply: a push "refused", a message lost)."""
    import signal

    def interrupt(signum, frame):
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(_Interrupted):
            layer.receive(["quiet"], block=True, timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    layer.send("quiet", {"after": "interrupt"})  # would raise ChannelFull if desynced
    layer.send("other", {"n": 2})
    assert layer.receive(["quiet"], block=True, timeout=1) == ("quiet", {"after": "interrupt"})
    assert layer.receive(["other"]) == ("other", {"n": 2})


def test_many_thread_receivers_get_each_message_once(make_layer):
    layer = make_layer(capacity=10000)
    received: list[int] = []
    lock = threading.Lock()

    def receiver() -> None:
        while True:
            channel, message = layer.receive(["work"], block=True, timeout=2)
            if message is None or message.get("stop"):
                return
            with lock:
                received.append(message["i"])

    threads = [threading.Thread(target=receiver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for i in range(1500):
        layer.send("work", {"i": i})
    for _ in threads:
        layer.send("work", {"stop": True})
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive(), "a receiver did not stop within 20 s"
    assert sorted(received) == list(range(1500))


def _process_receiver(prefix: str, out, ready) -> None:
    layer = RedisChannelLayer(hosts=[SHARED_URL], prefix=prefix)
    ready.wait(30)  # every receiver is up before the first send
    got = []
    while True:
        _, message = layer.receive(["mp"], block=True, timeout=10)
        if message is None or message.get("stop"):
            break
        got.append(message["i"])
    out.put(got)


def test_many_processes_receive_each_message_at_most_once(make_layer):
    """At-most-once across processes, while the sender is still sending."""
    layer = make_layer(capacity=100000, clock=None)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    # Without a start line, one receiver could drain everything before the
    # others finish importing, and the "every process got some" check would
    # measure start-up speed instead of queue sharing.
    ready = context.Barrier(5)  # 4 receivers + this process
    processes = [
        context.Process(target=_process_receiver, args=(layer.prefix, out, ready))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    try:
        ready.wait(30)
        for i in range(4000):
            layer.send("mp", {"i": i})
        for _ in processes:
            layer.send("mp", {"stop": True})
        results = [out.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    everything = [i for got in results for i in got]
    assert len(everything) == len(set(everything)), "a message was delivered twice"
    assert sorted(everything) == list(range(4000))  # nothing lost without failures
    assert all(results), "a receiver process got nothing: not sharing the queue?"


# ---------------------------------------------------------- failures


def test_unreachable_host_is_a_clear_error_from_send(caplog):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    layer = RedisChannelLayer(hosts=[url], prefix=unique_prefix(), socket_connect_timeout=1)
    with pytest.raises(RedisUnavailable, match=f"127.0.0.1:{port}") as info:
        layer.send("a", {})
    assert isinstance(info.value, ConnectionError)
    assert layer.RedisUnavailable is RedisUnavailable
    with pytest.raises(RedisUnavailable):
        layer.receive(["a"])  # non-blocking receive reports it too
    with pytest.raises(RedisUnavailable):
        layer.send_group("g", {})
    # A blocking receive logs, backs off and returns at its timeout.
    caplog.set_level(logging.WARNING, logger="chanlite.layers.redis")
    start = time.monotonic()
    assert layer.receive(["a"], block=True, timeout=0.5) == (None, None)
    assert 0.5 <= time.monotonic() - start < 2.0
    warnings = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    attempts = layer._hosts[0].failures
    assert 1 < attempts < 15, "expected a few backed-off attempts, not a tight loop"
    assert len(warnings) == 1, "one log line per outage interval, not one per attempt"
    assert str(port) in warnings[0].getMessage()


def test_restarted_redis_send_fails_clearly_then_recovers(private_server, caplog):
    caplog.set_level(logging.INFO, logger="chanlite.layers.redis")
    layer = RedisChannelLayer(hosts=[private_server.url], prefix="restart", socket_timeout=2,
                              reconnect_backoff_max=0.2)
    layer.send("a", {"before": 1})
    assert layer.receive(["a"]) == ("a", {"before": 1})
    private_server.stop()
    with pytest.raises(RedisUnavailable, match=str(private_server.port)):
        layer.send("a", {"down": 1})
    got = []
    receiver = threading.Thread(
        target=lambda: got.append(layer.receive(["a"], block=True, timeout=20))
    )
    receiver.start()
    eventually(lambda: any("reconnecting" in r.getMessage() for r in caplog.records),
               "the blocking receive to log its reconnect attempts", timeout=5)
    private_server.start()
    # The restarted server lost the script cache (NOSCRIPT path) and all data.
    layer.send("a", {"after": 1})
    receiver.join(10)
    assert got == [("a", {"after": 1})]
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    layer.flush()
    layer.close()


def test_timeout_cancel_after_a_restart_is_clean(private_server, caplog):
    """The CLIENT UNBLOCK side connection goes stale across a server restart;
    cancelling a timed-out pop must reconnect it, not report Redis down."""
    caplog.set_level(logging.WARNING, logger="chanlite.layers.redis")
    layer = RedisChannelLayer(hosts=[private_server.url], prefix="cancel")
    assert layer.receive(["a"], block=True, timeout=0.02) == (None, None)  # opens it
    private_server.restart()
    time.sleep(0.01)  # past the 2 ms idle threshold, so the main connection is checked
    assert layer.receive(["a"], block=True, timeout=0.02) == (None, None)
    assert not [r.getMessage() for r in caplog.records], "spurious failure after restart"
    layer.send("a", {"ok": 1})
    assert layer.receive(["a"], block=True, timeout=1) == ("a", {"ok": 1})
    layer.flush()
    layer.close()


def test_connections_killed_mid_traffic_never_duplicate(private_server):
    """Kill every client connection repeatedly while messages flow: some
    sends fail (and some in-flight pops may be lost: at most once), but no
    message may be delivered twice and nothing unsent may appear."""
    layer = RedisChannelLayer(hosts=[private_server.url], prefix="kill", capacity=100000,
                              reconnect_backoff=0.01, reconnect_backoff_max=0.05)
    attempted: list[int] = []
    received: list[int] = []
    stop = threading.Event()

    def receiver() -> None:
        while not stop.is_set():
            _, message = layer.receive(["k"], block=True, timeout=0.2)
            if message is not None:
                received.append(message["i"])

    threads = [threading.Thread(target=receiver) for _ in range(3)]
    for thread in threads:
        thread.start()
    admin = private_server.client()
    failures = killed = 0
    for i in range(3000):
        attempted.append(i)
        try:
            layer.send("k", {"i": i})
        except RedisUnavailable:
            failures += 1
        if i % 300 == 150:
            killed += admin.client_kill_filter(_type="normal", skipme=True)
    eventually(lambda: layer.channel_statistics("k")["messages_pending"] == 0,
               "the receivers to drain the queue", timeout=10)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert killed >= 10, f"only {killed} connections killed: reconnects not exercised"
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) <= set(attempted)
    assert len(received) >= 3000 - failures - 3 * 10 * 2  # only in-flight ones may be lost
    layer.flush()
    layer.close()
    admin.close()


def test_password_urls_work_and_are_hidden_in_errors():
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    server = RedisServer(password="s3cret").start()
    try:
        layer = RedisChannelLayer(hosts=[server.url], prefix="auth")
        layer.send("a", {"ok": True})
        assert layer.receive(["a"]) == ("a", {"ok": True})
        assert "s3cret" not in repr(layer)
        layer.flush()
        layer.close()
        wrong = RedisChannelLayer(hosts=[server.url.replace("s3cret", "nope")], prefix="auth")
        with pytest.raises(Exception) as info:  # redis-py's AuthenticationError
            wrong.send("a", {})
        assert "s3cret" not in str(info.value)
    finally:
        server.stop()


# ---------------------------------------------------------- configuration


def test_urls_are_parsed_and_validated():
    layer = RedisChannelLayer(
        hosts=["rediss://user:pw@redis.example:6380/2", ("10.0.0.1", 6379)], prefix="p"
    )
    tls, plain = layer._hosts
    assert tls.label == "rediss://user:***@redis.example:6380/2"
    assert tls._connection_class.__name__ == "SSLConnection"
    assert tls._kwargs["password"] == "pw" and tls._kwargs["db"] == 2
    assert plain.url == "redis://10.0.0.1:6379/0"
    assert plain._connection_class.__name__ == "Connection"
    with pytest.raises(ValueError, match="Redis URLs"):
        RedisChannelLayer(hosts=["http://localhost"])
    with pytest.raises(ValueError, match="at least one"):
        RedisChannelLayer(hosts=[])
    with pytest.raises(ValueError, match="prefix"):
        RedisChannelLayer(prefix="")
    with pytest.raises(ValueError, match="distinct"):
        RedisChannelLayer(hosts=[SHARED_URL, SHARED_URL])


def test_missing_redis_py_names_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis.") or name == "chanlite.layers.redis_hosts":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install chanlite\[redis\]"):
        RedisChannelLayer()


def test_hash_ring_moves_few_names_when_a_host_is_added():
    from chanlite.layers.redis_hosts import HashRing

    names = [f"chat.{i}" for i in range(3000)]
    two = HashRing(["redis://a:6379/0", "redis://b:6379/0"])
    three = HashRing(["redis://a:6379/0", "redis://b:6379/0", "redis://c:6379/0"])
    reordered = HashRing(["redis://b:6379/0", "redis://a:6379/0"])
    before = [two.index_for(n) for n in names]
    after = [three.index_for(n) for n in names]
    moved = [(b, a) for b, a in zip(before, after) if b != a]
    assert all(a == 2 for _, a in moved), "names moved between the old hosts"
    assert 0.2 < len(moved) / len(names) < 0.45, len(moved)
    assert 0.4 < before.count(0) / len(names) < 0.6  # balanced
    # The ring follows host identity, not list position.
    assert all(reordered.index_for(n) == 1 - b for n, b in zip(names, before))


def test_settings_switch_to_redis_by_changing_channel_layers_only(settings):
    from chanlite.layers import build_layer

    prefix = unique_prefix()
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "chanlite.layers.redis.RedisChannelLayer",
        "CONFIG": {"hosts": [SHARED_URL], "prefix": prefix, "capacity": 5},
    }}
    layer = build_layer("default")
    assert isinstance(layer, RedisChannelLayer) and layer.capacity == 5
    layer.send("s", {"via": "settings"})
    assert layer.receive(["s"]) == ("s", {"via": "settings"})
    layer.flush()
    layer.close()


def test_unix_socket_url(tmp_path):
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    server = RedisServer(unix_socket=str(tmp_path / "redis.sock")).start()
    try:
        layer = RedisChannelLayer(hosts=[server.url], prefix="unix")
        layer.send("a", {"local": True})
        assert layer.receive(["a"], block=True, timeout=2) == ("a", {"local": True})
        assert layer.receive(["a"], block=True, timeout=0.05) == (None, None)
        layer.flush()
        layer.close()
    finally:
        server.stop()


def test_tls_rediss_url_against_a_tls_server(tmp_path):
    from .redis_server import make_self_signed_cert

    missing = redis_server_missing() or make_self_signed_cert(str(tmp_path))
    if missing:
        pytest.skip(missing)
    server = RedisServer(tls_dir=str(tmp_path))
    try:
        server.start()
    except RuntimeError as exc:  # a redis-server built without TLS support
        pytest.skip(f"redis-server cannot serve TLS here: {exc}")
    try:
        layer = RedisChannelLayer(hosts=[server.url], prefix="tls",
                                  connection_options=server.tls_options)
        layer.send("a", {"secure": True})
        assert layer.receive(["a"], block=True, timeout=2) == ("a", {"secure": True})
        start = time.monotonic()  # the cancelled BLPOP works over TLS too
        assert layer.receive(["a"], block=True, timeout=0.1) == (None, None)
        assert time.monotonic() - start < 1
        layer.send("a", {"again": 1})
        assert layer.receive(["a"]) == ("a", {"again": 1})
        layer.flush()
        layer.close()
        untrusted = RedisChannelLayer(hosts=[server.url], prefix="tls")
        with pytest.raises(RedisUnavailable, match="rediss://127.0.0.1"):
            untrusted.send("a", {})  # self-signed certificate not trusted
    finally:
        server.stop()
