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


def w5p(ops: Ops, members: int = 100, sends: int = 200, burst: int = 50) -> dict[str, float]:
    """bench/layers.py's W5P on bare lists: one key per member, a pipeline
    per group send, one pop per delivery (what a layer without batching does)."""
    keys = [f"{PREFIX}:w5p.member{i}" for i in range(members)]
    start = time.perf_counter()
    for _ in range(sends // burst):
        for _ in range(burst):
            ops.push_many(keys, PAYLOAD)
        for key in keys:
            for _ in range(burst):
                ops.pop(key)
    return {"delivered/s": members * (sends // burst) * burst / (time.perf_counter() - start)}


# channels_redis peers (Channels 4, async): the same W5P shape, written the
# way a Channels 4 consumer uses the layer (``new_channel()`` members, one
# ``receive(name)`` per delivery). The pub/sub layer only delivers to
# channels with a subscriber, so every member starts a receive (subscribes)
# before the clock starts, as bench/channels4.py does.
PEERS = {"channels-redis": "channels_redis.core.RedisChannelLayer",
         "channels-redis-pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer"}
PEER_MESSAGE = {"type": "bench.message", "reply_channel": "http.response!c4Kx9aQ2",
                "path": "/chat/room-1/", "text": "hello, world", "order": 0}


async def _peer_w5p(layer: Any, members: int = 100, sends: int = 200,
                    burst: int = 50) -> dict[str, float]:
    import asyncio

    names = [await layer.new_channel() for _ in range(members)]
    for name in names:
        await layer.group_add("bench-w5p", name)
    first = [asyncio.ensure_future(layer.receive(name)) for name in names]  # subscribe
    await asyncio.sleep(0.2)
    got = 0
    start = time.perf_counter()
    for round_ in range(sends // burst):
        for _ in range(burst):
            await layer.group_send("bench-w5p", PEER_MESSAGE)
        each = burst
        if round_ == 0:
            got += len(await asyncio.gather(*first))
            each -= 1
        for name in names:
            for _ in range(each):
                await layer.receive(name)
                got += 1
    elapsed = time.perf_counter() - start
    if got != members * (sends // burst) * burst:
        raise SystemExit(f"W5P ({type(layer).__name__}): {got} deliveries")
    return {"delivered/s": got / elapsed}


def run_peer(peer: str, url: str) -> dict[str, float]:
    """One W5P run on a fresh channels_redis layer under its own prefix."""
    import asyncio
    import importlib
    import uuid

    module, _, name = PEERS[peer].rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    hosts = [{"address": url, "socket_timeout": 30}]
    prefix = f"{PREFIX}-{uuid.uuid4().hex[:8]}"

    async def go() -> dict[str, float]:
        kwargs: dict[str, Any] = {"hosts": hosts, "prefix": prefix}
        if peer == "channels-redis":
            kwargs["capacity"] = 100_000
        layer = cls(**kwargs)
        try:
            return await _peer_w5p(layer)
        finally:
            if hasattr(layer, "flush"):
                await layer.flush()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()

    return asyncio.run(go())


LOOPS: dict[str, Callable[[Ops], dict[str, float]]] = {
    "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W5P": w5p,
}


def run(
    keys: list[str], repeat: int, warmup: int = 1, url: str = "redis://127.0.0.1:6379/0",
    raw: bool = False, peer: str | None = None,
) -> dict[str, dict[str, list[float]]]:
    """Every measured rate per workload, in ``bench/layers.py``'s result shape.

    ``peer`` ("channels-redis" or "channels-redis-pubsub"): run W5P on that
    channels_redis layer instead of bare loops (other workloads skipped)."""
    if peer is not None:
        if peer not in PEERS:
            raise SystemExit(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
        runs: dict[str, list[float]] = {}
        if "W5P" in keys:
            for _ in range(warmup):
                run_peer(peer, url)
            for _ in range(repeat):
                gc.collect()
                for metric, value in run_peer(peer, url).items():
                    runs.setdefault(metric, []).append(value)
        return {"W5P": runs} if runs else {}
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
