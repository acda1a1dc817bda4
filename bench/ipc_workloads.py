"""Cross-process workloads for ``bench/layers.py`` (registered by it).

Why a separate module: these need a second process, a ``multiprocessing``
baseline measured in the same run, and wall-clock time (the work is split
between two processes, so one process's CPU time means nothing). They only
use the public layer API, like the other workloads.

- W3: one producer process streams 20 000 messages to a consumer (this
  process); msgs/s; checks none is lost, duplicated or out of order. The
  same transfer over ``multiprocessing.Queue`` runs right after it, and the
  ratio is printed as ``vs_mpq``.
- W4: ping-pong between two processes, 2 000 round trips; p50 and p99 in
  µs, with the ``multiprocessing.Queue`` figures beside them.
- W6: W2 (interleaved send/receive pairs) with 10 KB bytes payloads.
- W1@1K, W1@10K, W1@50K: W1 with that many messages queued; per-message
  cost must not grow with the backlog.
- W3BUSY: W3 and its ``multiprocessing.Queue`` baseline while one
  CPU-burning process per core runs (a busy host: no spare core).
- W3RING: W3 and the same stream through a bare ring in posix_ipc shared
  memory with two posix_ipc semaphores (the classic bounded buffer, msgpack
  bodies): no channel layer at all, the ceiling for W3.

Children are forked: they build their own layer with the same factory (for
the IPC layer, the same prefix), which is how real processes share it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

LayerFactory = Callable[[], Any]
_PAYLOAD_10K = os.urandom(10 * 1024)
_W3_COUNT = 20_000
_W4_ROUNDS = 2_000


def _fork(fn: Callable[[], None]) -> int:
    # gc.freeze() first: otherwise the child's first collections write to the
    # GC headers of every inherited object, copy-on-write faulting thousands
    # of pages (measured: W4 p99 3.5 ms instead of 0.2 ms). Deployments start
    # workers fresh; the multiprocessing baseline gets the same treatment.
    gc.freeze()
    pid = os.fork()
    gc.unfreeze()
    if pid == 0:  # pragma: no cover - child
        try:
            fn()
        finally:
            os._exit(0)
    return pid


def _send_retrying(layer: Any, channel: str, message: dict) -> None:
    while True:
        try:
            layer.send(channel, message)
            return
        except layer.ChannelFull:  # back-pressure: let the consumer catch up
            time.sleep(0.0002)


_shared: dict[int, bool] = {}


def _check_shared(layer_factory: LayerFactory) -> Any:
    """The layer if another process sees what it sends, else None (once per
    factory: an in-process layer simply has no W3/W4 figures)."""
    layer = layer_factory()
    layer.flush()
    known = _shared.get(id(layer_factory))
    if known is None:
        pid = _fork(lambda: layer_factory().send("bench.probe", {"ok": True}))
        os.waitpid(pid, 0)  # the child has sent (or failed to) once it exited
        # Non-blocking receive only: the probe runs on every layer, including
        # asgiref 1.1.2's, whose receive() takes no timeout.
        known = layer.receive(["bench.probe"], block=False)[0] is not None
        _shared[id(layer_factory)] = known
        if not known:
            print("W3/W4 skipped: the layer is not shared between processes", file=sys.stderr)
    return layer if known else None


def _w3_layer(layer_factory: LayerFactory, count: int) -> float | None:
    layer = _check_shared(layer_factory)
    if layer is None:
        return None
    go_read, go_write = os.pipe()

    def producer() -> None:
        mine = layer_factory()
        os.read(go_read, 1)
        for i in range(count):
            _send_retrying(mine, "bench.w3", {"i": i, "text": "hello, world"})

    pid = _fork(producer)
    receive, channels = layer.receive, ["bench.w3"]
    start = time.perf_counter()
    os.write(go_write, b"g")
    for i in range(count):
        channel, message = receive(channels, block=True, timeout=30)
        if channel is None or message["i"] != i:
            raise SystemExit(
                f"W3: expected message {i}, got {message!r}: lost, duplicated or reordered"
            )
    end = time.perf_counter()
    os.waitpid(pid, 0)
    os.close(go_read)
    os.close(go_write)
    return count / (end - start)


def _mpq_producer(queue: Any, go: Any, count: int) -> None:
    go.wait()
    for i in range(count):
        queue.put({"i": i, "text": "hello, world"})


def _w3_mpq(count: int) -> float:
    ctx = multiprocessing.get_context("fork")
    queue, go = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_mpq_producer, args=(queue, go, count))
    gc.freeze()
    proc.start()
    gc.unfreeze()
    start = time.perf_counter()
    go.set()
    for i in range(count):
        if queue.get(timeout=30)["i"] != i:
            raise SystemExit("W3 baseline: multiprocessing.Queue lost or reordered a message")
    end = time.perf_counter()
    proc.join()
    return count / (end - start)


def w3_stream(layer_factory: LayerFactory, count: int = _W3_COUNT) -> dict[str, float]:
    """Producer process -> consumer process, then the same over multiprocessing.Queue."""
    ours = _w3_layer(layer_factory, count)
    if ours is None:
        return {}
    base = _w3_mpq(count)
    return {"msgs/s": ours, "mpq msgs/s": base, "% of mpq": 100 * ours / base}


class _Burners:
    """One CPU-burning process per core while the block runs (W3BUSY)."""

    def __enter__(self) -> _Burners:
        self.pids = [_fork(_burn) for _ in range(os.cpu_count() or 1)]
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self.pids:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def _burn() -> None:  # pragma: no cover - child
    while True:
        pass


def w3_busy(layer_factory: LayerFactory, count: int = _W3_COUNT) -> dict[str, float]:
    """W3 and multiprocessing.Queue with a CPU-bound neighbour on every core."""
    if _check_shared(layer_factory) is None:
        return {}
    with _Burners():
        ours = _w3_layer(layer_factory, count)
        base = _w3_mpq(count)
    assert ours is not None
    return {"busy msgs/s": ours, "busy mpq msgs/s": base, "busy % of mpq": 100 * ours / base}


_RING_SLOTS, _RING_SLOT = 1024, 64


def _w3_ring(count: int) -> float:
    """The W3 stream through a bare posix_ipc ring: fixed 64-byte slots, a
    semaphore counting filled slots and one counting free ones."""
    import mmap

    import msgpack
    import posix_ipc

    name = f"/chanlite-bench-ring-{os.getpid()}"
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=_RING_SLOTS * _RING_SLOT)
    filled = posix_ipc.Semaphore(name + "-filled", posix_ipc.O_CREX, initial_value=0)
    free = posix_ipc.Semaphore(name + "-free", posix_ipc.O_CREX, initial_value=_RING_SLOTS)
    ring = mmap.mmap(shm.fd, shm.size)
    shm.close_fd()
    go_read, go_write = os.pipe()

    def producer() -> None:
        os.read(go_read, 1)
        packb = msgpack.packb
        for i in range(count):
            data = packb({"i": i, "text": "hello, world"})
            free.acquire()
            at = (i % _RING_SLOTS) * _RING_SLOT
            ring[at] = len(data)
            ring[at + 1 : at + 1 + len(data)] = data
            filled.release()

    try:
        pid = _fork(producer)
        unpackb = msgpack.unpackb
        start = time.perf_counter()
        os.write(go_write, b"g")
        for i in range(count):
            filled.acquire(30)
            at = (i % _RING_SLOTS) * _RING_SLOT
            message = unpackb(ring[at + 1 : at + 1 + ring[at]])
            free.release()
            if message["i"] != i:
                raise SystemExit("W3 ring: lost or reordered a message")
        end = time.perf_counter()
        os.waitpid(pid, 0)
    finally:
        ring.close()
        for sem in (filled, free):
            sem.unlink()
            sem.close()
        posix_ipc.unlink_shared_memory(name)
        os.close(go_read)
        os.close(go_write)
    return count / (end - start)


def w3_ring(layer_factory: LayerFactory, count: int = _W3_COUNT) -> dict[str, float]:
    """W3, then the same stream through a bare posix_ipc ring (the ceiling)."""
    ours = _w3_layer(layer_factory, count)
    if ours is None:
        return {}
    ring = _w3_ring(count)
    return {"msgs/s": ours, "ring msgs/s": ring, "% of ring": 100 * ours / ring}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _w4_layer(layer_factory: LayerFactory, rounds: int) -> tuple[float, float] | None:
    layer = _check_shared(layer_factory)
    if layer is None:
        return None

    def echo() -> None:
        mine = layer_factory()
        for _ in range(rounds + 100):
            _, message = mine.receive(["bench.w4.ping"], block=True, timeout=30)
            mine.send("bench.w4.pong", message)

    pid = _fork(echo)
    send, receive, pong = layer.send, layer.receive, ["bench.w4.pong"]
    samples = []
    for i in range(rounds + 100):
        start = time.perf_counter()
        send("bench.w4.ping", {"i": i})
        channel, message = receive(pong, block=True, timeout=30)
        elapsed = time.perf_counter() - start
        if channel is None or message["i"] != i:
            raise SystemExit(f"W4: round {i} got {message!r}")
        if i >= 100:  # the first 100 rounds warm up both processes
            samples.append(elapsed * 1e6)
    os.waitpid(pid, 0)
    return _percentiles(samples)


def _mpq_echo(ping: Any, pong: Any, rounds: int) -> None:
    for _ in range(rounds):
        pong.put(ping.get())


def _w4_mpq(rounds: int) -> tuple[float, float]:
    ctx = multiprocessing.get_context("fork")
    ping, pong = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_mpq_echo, args=(ping, pong, rounds + 100))
    gc.freeze()
    proc.start()
    gc.unfreeze()
    samples = []
    for i in range(rounds + 100):
        start = time.perf_counter()
        ping.put({"i": i})
        pong.get(timeout=30)
        if i >= 100:
            samples.append((time.perf_counter() - start) * 1e6)
    proc.join()
    return _percentiles(samples)


def w4_pingpong(layer_factory: LayerFactory, rounds: int = _W4_ROUNDS) -> dict[str, float]:
    """Round-trip latency between two processes, then over multiprocessing.Queue."""
    ours = _w4_layer(layer_factory, rounds)
    if ours is None:
        return {}
    p50, p99 = ours
    base50, base99 = _w4_mpq(rounds)
    return {"p50_us": p50, "p99_us": p99, "mpq p50_us": base50, "mpq p99_us": base99}


def register(workloads: dict[str, Any], workload_cls: type, w1: Callable, w2: Callable,
             message: dict[str, Any]) -> None:
    """Add W3, W4, W6 and the W1 backlog sizes to ``bench/layers.py``'s registry."""

    def w6_big_pairs(layer_factory: LayerFactory) -> dict[str, float]:
        message["payload"] = _PAYLOAD_10K
        try:
            return w2(layer_factory)
        finally:
            del message["payload"]

    workloads["W3"] = workload_cls(
        f"cross-process stream: {_W3_COUNT:,} msgs producer -> consumer (vs multiprocessing.Queue)",
        w3_stream)
    workloads["W4"] = workload_cls(
        f"cross-process ping-pong, {_W4_ROUNDS:,} round trips (vs multiprocessing.Queue)",
        w4_pingpong)
    workloads["W6"] = workload_cls("W2 with a 10 KB bytes payload in each message", w6_big_pairs)
    workloads["W3BUSY"] = workload_cls(
        "W3 with a CPU-burning process per core (vs multiprocessing.Queue, same burners)",
        w3_busy)
    workloads["W3RING"] = workload_cls(
        "W3, then the same stream over a bare posix_ipc ring (the ceiling)", w3_ring)
    for count in (1_000, 10_000, 50_000):
        workloads[f"W1@{count // 1000}K"] = workload_cls(
            f"W1 with {count:,} queued (per-message cost must stay flat)",
            lambda factory, count=count: w1(factory, count=count))
