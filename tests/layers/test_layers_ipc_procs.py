"""The IPC layer across processes: blocking wake-ups, CPU of a blocked
receiver, many senders and receivers at once, and SIGKILL chaos.

Children are forked (cheap, and they inherit nothing they must not: the
layer module renews its locks after a fork). Every wait is bounded and
fails with a message saying what did not happen.
"""

from __future__ import annotations

import os
import random
import resource
import threading
import time
from collections import defaultdict

from chanlite.testing import eventually

from .ipc_helpers import (
    SMALL,
    fork,
    kill,
    read_records,
    receiver_main,
    sender_main,
    wait_exit,
)


def _blocked(layer, count: int = 1):
    return lambda: layer.segment_info()["blocked_receivers"] >= count


def test_blocking_receive_is_woken_by_another_process(make_ipc):
    layer = make_ipc()
    read_end, write_end = os.pipe()

    def child():
        got = layer.receive(["wake"], block=True, timeout=20)
        os.write(write_end, repr((got, time.time())).encode())
        os._exit(0)

    pid = fork(child)
    eventually(_blocked(layer), "the child to block in receive()", timeout=10, interval=0.002)
    sent_at = time.time()
    layer.send("wake", {"n": 1})
    assert wait_exit(pid, 10) == 0
    got, woke_at = eval(os.read(read_end, 1000).decode())  # noqa: S307 - our own repr
    assert got == ("wake", {"n": 1})
    # Generous for a loaded 2-core machine; a lost wake-up would take the 20 s timeout.
    assert woke_at - sent_at < 1.0, f"woke {woke_at - sent_at:.3f} s after the send"
    assert layer.segment_info()["blocked_receivers"] == 0


def test_blocking_receive_is_woken_by_another_thread(make_ipc):
    layer = make_ipc()
    results = []
    thread = threading.Thread(
        target=lambda: results.append(layer.receive(["a", "b"], block=True, timeout=20))
    )
    thread.start()
    eventually(_blocked(layer), "the thread to block in receive()", timeout=10, interval=0.002)
    layer.send("b", {"x": 1})
    thread.join(10)
    assert not thread.is_alive()
    assert results == [("b", {"x": 1})]


def test_timeout_is_honoured(make_ipc):
    layer = make_ipc()
    for timeout in (0, 0.05, 0.3):
        start = time.monotonic()
        assert layer.receive(["none"], block=True, timeout=timeout) == (None, None)
        elapsed = time.monotonic() - start
        assert timeout <= elapsed < timeout + 1.0, (timeout, elapsed)
    assert layer.segment_info()["blocked_receivers"] == 0


def test_blocked_receiver_uses_no_cpu(make_ipc):
    """A receiver blocked for 1.5 s spends < 1% of a core (it sleeps on its
    doorbell semaphore; nothing polls)."""
    layer = make_ipc()
    read_end, write_end = os.pipe()

    def child():
        layer.receive(["warm"], block=True, timeout=0)  # open the doorbell first
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        layer.receive(["idle"], block=True, timeout=1.5)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        os.write(write_end, f"{cpu} {wall}".encode())
        os._exit(0)

    pid = fork(child)
    assert wait_exit(pid, 15) == 0
    cpu, wall = map(float, os.read(read_end, 100).split())
    assert wall >= 1.5
    assert cpu / wall < 0.01, f"blocked receiver used {cpu * 1000:.1f} ms CPU in {wall:.2f} s"


def _check_logs(sent: dict[int, list[int]], receiver_logs: list[list[tuple]],
                drained: list[tuple], lost_allowed: int) -> dict[str, int]:
    """At-most-once, single-sender FIFO per channel, and accounting."""
    seen: set[tuple[int, int]] = set()
    for log in receiver_logs + [drained]:
        last: dict[tuple[int, int], int] = {}
        for sender, seq, channel in log:
            assert (sender, seq) not in seen, f"message {(sender, seq)} delivered twice"
            seen.add((sender, seq))
            key = (sender, channel)
            assert seq > last.get(key, -1), f"sender {sender} out of order on channel {channel}"
            last[key] = seq
    logged = {(s, q) for s, seqs in sent.items() for q in seqs}
    highest = {s: max(seqs, default=-1) for s, seqs in sent.items()}
    for sender, seq in seen:
        # a sender killed after send() returned but before logging: one extra
        assert seq <= highest.get(sender, -1) + 1, f"message {(sender, seq)} was never sent"
    missing = logged - seen
    assert len(missing) <= lost_allowed, (
        f"{len(missing)} sent messages lost (allowed: {lost_allowed}, one per killed "
        f"receiver): {sorted(missing)[:10]}"
    )
    return {"delivered": len(seen), "missing": len(missing)}


def _drain(layer, channels) -> list[tuple]:
    out = []
    for _ in range(10**6 + 1):  # the layer's capacity: more means something keeps refilling it
        channel, message = layer.receive(channels)
        if channel is None:
            return out
        queue = channel.split("!")[0] + "!" if "!" in channel else channel
        out.append((message["s"], message["q"], channels.index(queue)))
    raise AssertionError(f"draining never ended ({len(out)} messages): a producer still alive?")


def test_many_processes_at_most_once_and_fifo(make_ipc, tmp_path):
    layer = make_ipc(capacity=10**6)
    channels = ["mp.a", "mp.b", "mp!"]
    send_to = ["mp.a", "mp.b", "mp!x", "mp!y"]
    senders = {
        sid: fork(sender_main, layer.prefix, sid, 0, 3000, str(tmp_path / f"s{sid}"), send_to)
        for sid in range(3)
    }
    receivers = [fork(receiver_main, layer.prefix, str(tmp_path / f"r{i}"), channels)
                 for i in range(3)]
    for pid in senders.values():
        assert wait_exit(pid, 60) == 0
    eventually(lambda: layer.global_statistics()["messages_pending"] == 0,
               "the receivers to take every message", timeout=30, interval=0.002)
    for _ in receivers:
        layer.send("ctl", {})
    for pid in receivers:
        assert wait_exit(pid, 30) == 0
    sent = {sid: [q for _, q, _ in read_records(str(tmp_path / f"s{sid}"))] for sid in senders}
    logs = [read_records(str(tmp_path / f"r{i}")) for i in range(3)]
    result = _check_logs(sent, logs, [], lost_allowed=0)
    assert result["delivered"] == 9000
    assert all(len(log) > 0 for log in logs), "a receiver got nothing: no parallelism tested"
    layer.check()


def _grouper_main(prefix: str, seed: int) -> None:
    from chanlite.layers.ipc import IPCChannelLayer

    layer = IPCChannelLayer(prefix=prefix, **SMALL, capacity=50)
    rng = random.Random(seed)
    while True:
        member = rng.choice(["gm.a", "gm.b", "gm!c", "gm.d"])
        action = rng.random()
        if action < 0.4:
            layer.group_add("chaos", member)
        elif action < 0.6:
            layer.group_discard("chaos", member)
        elif action < 0.9:
            layer.send_group("chaos", {"g": 1})
        else:
            layer.receive(["gm.a", "gm.b", "gm!", "gm.d"])


def _chaos_loop(layer, procs, start, kills, rng, kills_wanted, max_seconds) -> float:
    """Kill a random child at a random moment, restart one of its kind, and
    probe the layer from this process; return the slowest probe."""
    for kind in ("sender", "sender", "receiver", "receiver", "grouper"):
        start(kind)
    slowest = 0.0
    started = time.monotonic()
    while sum(kills.values()) < kills_wanted and time.monotonic() - started < max_seconds:
        time.sleep(rng.uniform(0.005, 0.06))  # a random moment in the victims' loops
        pid = rng.choice(list(procs))
        kind, _ = procs.pop(pid)
        kill(pid)
        os.waitpid(pid, 0)
        kills[kind] += 1
        start(kind)
        probe = time.monotonic()  # the survivors and this process go on at once
        layer.send("probe", {"s": 0, "q": 0})
        assert layer.receive(["probe"], block=True, timeout=5)[0] == "probe"
        layer.group_channels("chaos")
        slowest = max(slowest, time.monotonic() - probe)
        assert slowest < 1.0, f"an operation waited {slowest:.2f} s after a kill"
    return slowest


def test_sigkill_chaos(make_ipc, tmp_path):
    """Kill senders, receivers and group users with SIGKILL at random moments
    (hundreds of times). Meanwhile this process keeps using the layer and
    must never wait a second; afterwards nothing is duplicated, and only
    messages a killed receiver had already taken may be missing."""
    kills_wanted = int(os.environ.get("CHANLITE_CHAOS_KILLS", "300"))
    max_seconds = float(os.environ.get("CHANLITE_CHAOS_SECONDS", "40"))
    layer = make_ipc(capacity=10**6)
    recoveries_before = layer._store.recoveries
    channels = ["cx.a", "cx.b", "cx!"]
    send_to = ["cx.a", "cx.b", "cx!p"]
    rng = random.Random(20261125)
    next_id = iter(range(10**6))
    procs: dict[int, tuple[str, int]] = {}  # pid -> (kind, id)

    def start(kind: str) -> None:
        ident = next(next_id)
        if kind == "sender":
            pid = fork(sender_main, layer.prefix, ident, 0, 10**7, str(tmp_path / f"s{ident}"),
                       send_to, 3000)  # bounded backlog: 3 x 3000 small messages fit
        elif kind == "receiver":
            pid = fork(receiver_main, layer.prefix, str(tmp_path / f"r{ident}"), channels)
        else:
            pid = fork(_grouper_main, layer.prefix, ident)
        procs[pid] = (kind, ident)

    kills: dict[str, int] = defaultdict(int)
    try:
        slowest = _chaos_loop(layer, procs, start, kills, rng, kills_wanted, max_seconds)
    finally:
        for pid, (kind, _) in list(procs.items()):  # the last ones die by SIGKILL too
            kill(pid)
            os.waitpid(pid, 0)
            kills[kind] += 1
    total = sum(kills.values())
    assert total >= min(kills_wanted, 100), f"only {total} kills in {max_seconds} s"
    layer.check()  # every invariant of the heap, tables and lists
    drained = _drain(layer, channels)
    sent = defaultdict(list)
    logs = []
    for path in tmp_path.iterdir():
        records = read_records(str(path))
        if path.name.startswith("s"):
            sent[int(path.name[1:])] = [q for _, q, _ in records]
        else:
            logs.append(records)
    result = _check_logs(dict(sent), logs, drained, lost_allowed=kills["receiver"])
    assert result["delivered"] > 1000, f"too little traffic to prove anything: {result}"
    assert layer._store.recoveries > recoveries_before, "no kill landed inside an operation"
    print(f"chaos: {dict(kills)} kills, {result}, slowest probe {slowest * 1000:.0f} ms, "
          f"{layer._store.recoveries - recoveries_before} journal rollbacks")


def test_spinning_stops_for_a_receiver_that_keeps_waiting(make_ipc):
    """The pre-sleep spin halves on every miss, so a receiver whose messages
    come rarely (or never) soon sleeps at once; spin=0 never spins."""
    layer = make_ipc(spin=0.0002)
    for _ in range(8):
        assert layer.receive(["rare"], block=True, timeout=0.001) == (None, None)
    assert layer._spin == 0.0
    assert make_ipc(spin=0)._spin == 0.0


def test_receivers_beyond_the_waiter_slots_still_get_messages(make_ipc):
    """With all 128 doorbell slots taken, a blocking receive falls back to
    short sleeps: slower to wake, but it neither fails nor hangs."""
    layer = make_ipc()
    store = layer._store
    store.lock()
    try:
        slots = [store.claim_waiter() for _ in range(128)]
    finally:
        store.unlock()
    assert -1 not in slots
    try:
        assert layer.receive(["full"], block=True, timeout=0.05) == (None, None)  # polls
        results = []
        thread = threading.Thread(
            target=lambda: results.append(layer.receive(["full"], block=True, timeout=10)))
        thread.start()
        sent = time.monotonic()
        layer.send("full", {"n": 1})
        thread.join(10)
        assert not thread.is_alive(), "the polling receiver was not woken by the send"
        assert results == [("full", {"n": 1})]
        assert time.monotonic() - sent < 1.0  # generous for a loaded machine; not 10 s
    finally:
        store.lock()
        try:
            for slot in slots:
                store.release_waiter(slot, [])
        finally:
            store.unlock()
