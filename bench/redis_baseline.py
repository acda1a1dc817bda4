"""Bare redis-py loops: the baseline the Redis channel layer is compared to.

Why: a channel layer over Redis can never beat the round trips it makes, so
the honest yardstick is the same workload written directly against redis-py
(``LPUSH``/``BLPOP``, a pipeline per group send), measured in the same run
on the same server. ``bench/layers.py --baseline redis`` prints the layer's
rate over this one; ``--baseline redis-raw`` uses redis-py's bare
``Connection`` (no client, pool or retry machinery), the transport the
layer itself uses, for a stricter comparison.

Workloads mirror ``bench/layers.py`` (same keys and metric names, so the
ratio column lines up); a workload without a Redis equivalent is skipped.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

PAYLOAD = b"x" * 90  # about the encoded size of bench/layers.py's MESSAGE
# Per run: Redis is shared, and two runs at once must not pop each other's keys.
# Through the environment, so the W3/W4 children (spawned, they re-import this
# module) use their parent's prefix.
PREFIX = os.environ.setdefault("CHANLITE_BENCH_BASELINE_PREFIX",
                               f"chanlite-bench-baseline-{os.getpid()}")


class Ops:
    """The three operations the loops need, over the client or a raw connection."""

    def __init__(self, url: str, raw: bool) -> None:
        import redis

        self.url, self.raw = url, raw
        if raw:
            pool = redis.ConnectionPool.from_url(url)
            self.conn = pool.connection_class(**pool.connection_kwargs)
            self.conn.connect()
        else:
            self.client = redis.Redis.from_url(url)

    def command(self, *args: Any) -> Any:
        if self.raw:
            self.conn.send_command(*args)
            return self.conn.read_response()
        return self.client.execute_command(*args)

    def push(self, key: str, item: bytes) -> None:
        if self.raw:
            self.command("RPUSH", key, item)
        else:
            self.client.rpush(key, item)

    def pop(self, key: str, timeout: float = 5) -> Any:
        if self.raw:
            return self.command("BLPOP", key, timeout)
        return self.client.blpop([key], timeout)

    def push_many(self, keys: list[str], item: bytes) -> None:
        if self.raw:
            self.conn.send_packed_command(
                self.conn.pack_commands([("RPUSH", key, item) for key in keys])
            )
            for _ in keys:
                self.conn.read_response()
        else:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.rpush(key, item)
            pipe.execute()

    def close(self) -> None:
        keys = [k for k in self._scan()]
        if keys:
            self.command("DEL", *keys)
        if self.raw:
            self.conn.disconnect()
        else:
            self.client.close()

    def _scan(self) -> list[bytes]:
        cursor, found = 0, []
        while True:
            cursor, keys = self.command("SCAN", cursor, "MATCH", PREFIX + ":*", "COUNT", 1000)
            found.extend(keys)
            if int(cursor) == 0:
                return found


def w1(ops: Ops, count: int = 20_000) -> dict[str, float]:
    key = f"{PREFIX}:w1"
    start = time.perf_counter()
    for _ in range(count):
        ops.push(key, PAYLOAD)
    middle = time.perf_counter()
    for _ in range(count):
        ops.pop(key)
    end = time.perf_counter()
    return {"sends/s": count / (middle - start), "receives/s": count / (end - middle)}


def w2(ops: Ops, count: int = 20_000) -> dict[str, float]:
    key = f"{PREFIX}:w2"
    start = time.perf_counter()
    for _ in range(count):
        ops.push(key, PAYLOAD)
        ops.pop(key)
    return {"pairs/s": count / (time.perf_counter() - start)}


def w6(ops: Ops, count: int = 20_000) -> dict[str, float]:
    """W2 with a 10 KB payload, like bench/ipc_workloads.py's W6."""
    key, payload = f"{PREFIX}:w6", b"x" * (10 * 1024 + 90)
    start = time.perf_counter()
    for _ in range(count):
        ops.push(key, payload)
        ops.pop(key)
    return {"pairs/s": count / (time.perf_counter() - start)}


def _w3_consumer(url: str, raw: bool, count: int, ready: Any, done: Any) -> None:
    ops = Ops(url, raw)
    key = f"{PREFIX}:w3"
    ready.set()
    for _ in range(count):
        ops.pop(key, 10)
    done.value = time.perf_counter()


def w3(ops: Ops, count: int = 20_000) -> dict[str, float]:
    """One process pushes, another BLPOPs; rate over the whole stream."""
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Value("d", 0.0)
    consumer = context.Process(target=_w3_consumer, args=(ops.url, ops.raw, count, ready, done))
    consumer.start()
    ready.wait(30)
    key = f"{PREFIX}:w3"
    start = time.perf_counter()
    for _ in range(count):
        ops.push(key, PAYLOAD)
    consumer.join(120)
    return {"msgs/s": count / (done.value - start)}


def _w4_echo(url: str, raw: bool, count: int, ready: Any) -> None:
    ops = Ops(url, raw)
    ready.set()
    for _ in range(count):
        item = ops.pop(f"{PREFIX}:w4.ping", 10)
        ops.push(f"{PREFIX}:w4.pong", item[1])


def w4(ops: Ops, count: int = 5_000) -> dict[str, float]:
    """Ping-pong between two processes; round-trip latency percentiles."""
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    echo = context.Process(target=_w4_echo, args=(ops.url, ops.raw, count, ready))
    echo.start()
    ready.wait(30)
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        ops.push(f"{PREFIX}:w4.ping", PAYLOAD)
        ops.pop(f"{PREFIX}:w4.pong", 10)
        samples.append((time.perf_counter() - start) * 1e6)
    echo.join(30)
    samples.sort()
    return {"p50_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99)]}


def w5(ops: Ops, members: int = 100, sends: int = 200) -> dict[str, float]:
    keys = [f"{PREFIX}:w5.member{i}" for i in range(members)]
    start = time.perf_counter()
    for _ in range(sends):
        ops.push_many(keys, PAYLOAD)
    for key in keys:
        for _ in range(sends):
            ops.pop(key)
    return {"delivered/s": members * sends / (time.perf_counter() - start)}


LOOPS: dict[str, Callable[[Ops], dict[str, float]]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6,
}


def run(
    keys: list[str], repeat: int, warmup: int = 1, url: str = "redis://127.0.0.1:6379/0",
    raw: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Every measured rate per workload, in ``bench/layers.py``'s result shape."""
    ops = Ops(url, raw)
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for key in keys:
            loop = LOOPS.get(key)
            if loop is None:
                continue
            for _ in range(warmup):
                loop(ops)
            runs: dict[str, list[float]] = {}
            for _ in range(repeat):
                gc.collect()
                for metric, value in loop(ops).items():
                    runs.setdefault(metric, []).append(value)
            results[key] = runs
    finally:
        ops.close()
    return results
