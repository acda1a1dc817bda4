"""The Redis layer through Redis Sentinel, with a real failover.

The module starts a master, a replica and three ``redis-server --sentinel``
processes (tests/layers/redis_server.py ``SentinelCluster``, timings tuned down so
a failover takes seconds), then SIGKILLs the master under traffic and
measures what the issue asks: time to recover, messages lost, none
duplicated. The figures are printed (run with ``-s``) and recorded in
docs/layers.md. Skipped, printing why, only where ``redis-server`` is absent.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import pytest

from chanlite.testing import eventually

from .redis_server import SentinelCluster, redis_server_missing, wait_for

_REASON = redis_server_missing()
if _REASON:
    print(f"\nskipping Redis Sentinel tests: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

from chanlite.layers.redis import RedisUnavailable  # noqa: E402
from chanlite.layers.redis_sentinel import RedisSentinelChannelLayer  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    cluster = SentinelCluster().start()
    yield cluster
    cluster.stop()


def make_layer(cluster: SentinelCluster, **config) -> RedisSentinelChannelLayer:
    config.setdefault("prefix", "sentinel-test")
    return RedisSentinelChannelLayer(
        sentinels=cluster.sentinel_addresses, service_names=[cluster.service],
        capacity=100_000, socket_timeout=1.0, socket_connect_timeout=0.5,
        reconnect_backoff=0.05, reconnect_backoff_max=0.25, block_chunk=1.0, **config,
    )


def test_settings_are_checked_with_clear_errors():
    with pytest.raises(ValueError, match="service_names must be a non-empty list"):
        RedisSentinelChannelLayer(sentinels=[("127.0.0.1", 26379)], service_names="mymaster")
    with pytest.raises(ValueError, match=r"\(host, port\) pair"):
        RedisSentinelChannelLayer(sentinels=["nowhere"], service_names=["m"])
    with pytest.raises(ValueError, match="not both"):
        RedisSentinelChannelLayer(hosts=[("a", 1)], sentinels=[("a", 1)], service_names=["m"])


def test_asgi_redis_settings_port_unchanged(cluster):
    """asgi_redis 1.x spelled it ``hosts`` (the Sentinels) and ``services``."""
    layer = RedisSentinelChannelLayer(
        hosts=cluster.sentinel_addresses, services=[cluster.service], prefix="sentinel-asgi",
    )
    layer.send("ported", {"ok": True})
    assert layer.receive(["ported"]) == ("ported", {"ok": True})
    layer.flush()
    layer.close()


def test_discovers_the_master_and_names_it(cluster):
    layer = make_layer(cluster)
    layer.send("found", {"n": 1})
    assert cluster.master.client().llen("sentinel-test:q:found") == 1
    assert layer.receive(["found"], block=True, timeout=2) == ("found", {"n": 1})
    assert str(cluster.master.port) in layer.host_for_queue("found")
    assert cluster.service in layer.host_for_queue("found")
    layer.flush()
    layer.close()


def test_unknown_service_raises_the_unavailable_error():
    # No Sentinel answers and no master is known: a clear error, no hang.
    layer = RedisSentinelChannelLayer(
        sentinels=[("127.0.0.1", 1)], service_names=["nowhere"], socket_connect_timeout=0.5,
    )
    start = time.monotonic()
    with pytest.raises(RedisUnavailable, match="Sentinel service 'nowhere'"):
        layer.send("x", {})
    assert time.monotonic() - start < 3
    layer.close()


def test_manual_failover_with_the_old_master_still_running(cluster, caplog):
    """``SENTINEL FAILOVER``, then the old master turned into a replica while
    the layer still holds connections to it (a send's and a blocked
    receive's). The blocked ``BLPOP`` ends with ``-UNBLOCKED``, the next
    write meets ``READONLY`` or a killed connection; the layer must treat
    each as "ask the Sentinels again" and carry on on the new master."""
    caplog.set_level(logging.WARNING, logger="chanlite.layers.redis")
    layer = make_layer(cluster, prefix="sentinel-manual")
    layer.send("manual", {"n": 0})
    assert layer.receive(["manual"]) == ("manual", {"n": 0})
    writer = make_layer(cluster, prefix="sentinel-manual")  # a second process
    writer.send("manual.w", {"n": 0})
    old, new = cluster.master, cluster.replica
    got: list = []
    receiver = threading.Thread(
        target=lambda: got.append(layer.receive(["manual.wait"], block=True, timeout=15)))
    receiver.start()
    wait_for(lambda: old.client().info("clients")["blocked_clients"] >= 1,
             "the receiver to block on the old master")
    cluster.sentinels[0].client().execute_command("SENTINEL FAILOVER", cluster.service)
    wait_for(lambda: cluster.current_master_port() == new.port, "the Sentinels to switch")
    # Sentinel demotes the old master on its next periodic check (up to
    # 10 s); do what it would do, now, without killing our connections.
    old.client().replicaof("127.0.0.1", new.port)
    cluster.master, cluster.replica = new, old
    # The writer's connection to the old master is still open: its next
    # write meets READONLY, reported as unavailable (nothing ran); the one
    # after that asks the Sentinels and lands on the new master.
    with pytest.raises(RedisUnavailable, match="read only replica"):
        writer.send("manual.w", {"n": 1})
    writer.send("manual.w", {"n": 2})
    assert writer.receive(["manual.w"]) == ("manual.w", {"n": 0})  # replicated before
    assert writer.receive(["manual.w"]) == ("manual.w", {"n": 2})
    writer.close()
    eventually(lambda: layer.send("manual", {"n": 1}) or True, "a send to reach the new master",
               timeout=10, interval=0.05, ignore=(RedisUnavailable,))
    assert new.client().llen("sentinel-manual:q:manual") == 1
    assert layer.receive(["manual"], block=True, timeout=2) == ("manual", {"n": 1})
    assert str(new.port) in layer.host_for_queue("manual")
    # The blocked receive moved to the new master too.
    wait_for(lambda: new.client().info("clients")["blocked_clients"] >= 1,
             "the blocked receive to resume on the new master")
    layer.send("manual.wait", {"woke": True})
    receiver.join(5)
    assert got == [("manual.wait", {"woke": True})]
    assert any("failed over" in r.getMessage() for r in caplog.records)
    layer.flush()
    layer.close()
    # Leave a healthy pair for the next test: the old master replicating.
    wait_for(lambda: old.client().info("replication")["master_link_status"] == "up",
             "the old master to sync as a replica")
    for sentinel in cluster.sentinels:
        wait_for(lambda s=sentinel: cluster._knows_everyone(s), "Sentinels to see the replica")


def test_failover_under_traffic(cluster, caplog):
    """Kill the master while a sender and a blocking receiver run; the layer
    must find the promoted replica by itself. Runs last in this module (it
    leaves the cluster without its original master)."""
    caplog.set_level(logging.WARNING, logger="chanlite.layers.redis")
    sender_layer = make_layer(cluster)
    receiver_layer = make_layer(cluster)
    sent_ok: list[tuple[int, float]] = []  # (seq, time the send returned)
    send_errors: list[tuple[int, float]] = []
    slowest_send = [0.0]
    received: list[int] = []
    stop = threading.Event()

    def sender():
        seq = 0
        while not stop.is_set():
            seq += 1
            start = time.monotonic()
            try:
                sender_layer.send("failover", {"seq": seq})
                sent_ok.append((seq, time.monotonic()))
            except RedisUnavailable:
                send_errors.append((seq, time.monotonic()))
                time.sleep(0.02)
            slowest_send[0] = max(slowest_send[0], time.monotonic() - start)
            time.sleep(0.002)

    def receiver():
        while True:
            channel, message = receiver_layer.receive(["failover"], block=True, timeout=0.5)
            if channel is None:
                if stop.is_set():
                    return
                continue
            received.append(message["seq"])

    threads = [threading.Thread(target=sender), threading.Thread(target=receiver)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(received) >= 200, "traffic to start", timeout=10)
        old_port = cluster.master.port
        killed_at = time.monotonic()
        cluster.master.kill()
        # Recovered: a send succeeded after the kill *and* was received.
        def recovered() -> bool:
            after = [seq for seq, at in sent_ok if at > killed_at]
            return bool(after) and after[0] in set(received)

        eventually(recovered, lambda: (
            f"recovery after killing the master: {len(send_errors)} send errors, "
            f"Sentinels report master port {cluster.current_master_port()}"
        ), timeout=max(killed_at + 25 - time.monotonic(), 0))
        first_ok_after = min(at for seq, at in sent_ok if at > killed_at)
        recovery = first_ok_after - killed_at
        # Keep going a little on the new master, then drain.
        resume_mark = len(sent_ok)
        eventually(lambda: len(sent_ok) >= resume_mark + 200, "sending to go on after recovery",
                   timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert not any(t.is_alive() for t in threads), "a sender or receiver hung"
    new_port = cluster.current_master_port()
    assert new_port == cluster.replica.port != old_port

    ok = [seq for seq, _ in sent_ok]
    duplicates = len(received) - len(set(received))
    lost = sorted(set(ok) - set(received))
    after_recovery = [seq for seq, at in sent_ok if at >= first_ok_after]
    print(
        f"\nSentinel failover: recovered {recovery:.2f} s after SIGKILL of the master; "
        f"{len(ok)} sends succeeded, {len(send_errors)} raised RedisUnavailable; "
        f"lost {len(lost)} (all sent before the kill: {lost[:10]}), duplicated {duplicates}; "
        f"slowest send {slowest_send[0]:.2f} s",
        file=sys.stderr,
    )
    assert duplicates == 0, "a message was delivered twice"
    assert not set(after_recovery) - set(received), "a message sent after recovery was lost"
    # At most once: only messages the old master acknowledged in its last
    # instant (before replicating them) may be lost.
    killed_seq = max(seq for seq, at in sent_ok if at <= killed_at)
    assert all(seq <= killed_seq for seq in lost), (lost, killed_seq)
    assert len(lost) <= 20, lost
    assert received == sorted(received), "FIFO order broken across the failover"
    assert slowest_send[0] < 5, "a send hung instead of failing fast"
    assert any("failed over" in r.getMessage() for r in caplog.records)
    for layer in (sender_layer, receiver_layer):
        layer.flush()
        layer.close()
