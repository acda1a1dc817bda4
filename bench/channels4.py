"""Channels 4 layers side by side: chanlite's IPC layer, channels_redis
(core and pub/sub) and Channels' in-memory layer, in the same run.

Why a separate script: Channels 4 layers are async (``await send``,
``await receive(channel)`` waits), so bench/layers.py's sync workloads do not
apply; the workloads are the same ones (numbers as in docs/performance.md):

- W2: ``count`` interleaved ``send`` + ``receive`` pairs on one channel; pairs/s.
- W3: another process streams ``count`` messages to a channel received here;
  msgs/s from the first to the last message (process start-up excluded).
- W4: ping-pong with another process, ``rounds`` round trips; p50/p99 µs.
- W5: ``sends`` group sends to ``members`` process-local channels
  (``new_channel()`` names, as consumers use), then every member drains;
  delivered/s over send and receive time.

The in-memory layer cannot span processes (no W3/W4). The pub/sub layer
delivers only to subscribed receivers, so every receiver subscribes (starts a
``receive``) before anything is sent to it, for every layer alike.

Usage::

    python bench/channels4.py [--layers chanlite-ipc,redis-core,redis-pubsub,inmemory]
        [--workloads W2,W3,W4,W5] [--repeat 3] [--redis redis://127.0.0.1:6379/0]

Needs ``pip install -e '.[channels4]' channels_redis`` and a Redis for the
channels_redis columns (they are left out, saying why, if none answers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESSAGE = {"type": "bench.message", "text": "hello", "n": 1}
SUBSCRIBE = 0.2  # seconds a pub/sub subscription is given before sending to it
LAYERS = ("chanlite-ipc", "redis-core", "redis-pubsub", "inmemory")
SHARED = ("chanlite-ipc", "redis-core", "redis-pubsub")


def _hosts(url: str) -> list[dict[str, Any]]:
    # redis-py 8 reads with a 5 s socket timeout by default, the same as
    # channels_redis's blocking-pop timeout: a receive waiting 5 s then fails
    # with "Timeout reading". A longer socket timeout keeps them apart.
    return [{"address": url, "socket_timeout": 30}]


def make_layer(kind: str, prefix: str, redis: str) -> Any:
    """A fresh layer of ``kind``; ``prefix`` names its shared namespace."""
    if kind == "chanlite-ipc":
        from chanlite.channels4 import IPCChannelLayer

        return IPCChannelLayer(prefix=prefix, capacity=100_000, process_capacity=100_000)
    if kind == "redis-core":
        from channels_redis.core import RedisChannelLayer

        return RedisChannelLayer(hosts=_hosts(redis), prefix=prefix, capacity=100_000)
    if kind == "redis-pubsub":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        return RedisPubSubChannelLayer(hosts=_hosts(redis), prefix=prefix)
    if kind == "inmemory":
        from channels.layers import InMemoryChannelLayer

        return InMemoryChannelLayer(capacity=100_000)
    raise SystemExit(f"unknown layer {kind!r}; choose from {', '.join(LAYERS)}")


async def close(layer: Any) -> None:
    """Release the layer: its keys and connections (Redis), its segment (IPC)."""
    if hasattr(layer, "close_pools"):  # channels_redis core
        await layer.flush()
        await layer.close_pools()
    elif hasattr(layer, "close_sync"):  # chanlite
        layer.close_sync()
    else:  # pub/sub: flush unsubscribes and closes; in-memory: drops everything
        await layer.flush()


async def subscribed(layer: Any, channel: str) -> asyncio.Task:
    """A pending receive on ``channel``, given time to subscribe (pub/sub)."""
    task = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(SUBSCRIBE)
    return task


# ------------------------------------------------------------------ workloads


async def w2(layer: Any, count: int) -> dict[str, float]:
    channel = "bench.w2"
    first = await subscribed(layer, channel)
    await layer.send(channel, MESSAGE)
    await first
    start = time.perf_counter()
    for _ in range(count):
        await layer.send(channel, MESSAGE)
        await layer.receive(channel)
    return {"pairs/s": count / (time.perf_counter() - start)}


def child(kind: str, role: str, prefix: str, redis: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", role, "--layers", kind, "--prefix", prefix,
         "--redis", redis, "--count", str(count)],
        cwd=ROOT,
    )


async def w3(layer: Any, kind: str, prefix: str, redis: str, count: int) -> dict[str, float]:
    channel = "bench.w3"
    task = await subscribed(layer, channel)
    proc = child(kind, "producer", prefix, redis, count)
    got = await asyncio.wait_for(task, 60)
    start = time.perf_counter()
    for i in range(1, count):
        message = await asyncio.wait_for(layer.receive(channel), 60)
        if message["i"] != i:
            raise SystemExit(f"W3: message {i} is {message!r}: lost or reordered")
    elapsed = time.perf_counter() - start
    assert got["i"] == 0 and proc.wait(60) == 0
    return {"msgs/s": (count - 1) / elapsed}


async def w4(layer: Any, kind: str, prefix: str, redis: str, rounds: int) -> dict[str, float]:
    ready = await subscribed(layer, "bench.w4.pong")
    proc = child(kind, "echo", prefix, redis, rounds + 100)
    await asyncio.wait_for(ready, 60)
    samples = []
    for i in range(rounds + 100):
        start = time.perf_counter()
        await layer.send("bench.w4.ping", {"type": "ping", "i": i})
        message = await asyncio.wait_for(layer.receive("bench.w4.pong"), 30)
        elapsed = time.perf_counter() - start
        if message["i"] != i:
            raise SystemExit(f"W4: round {i} got {message!r}")
        if i >= 100:
            samples.append(elapsed * 1e6)
    assert proc.wait(60) == 0
    samples.sort()
    return {"p50_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}


async def w5(layer: Any, members: int, sends: int) -> dict[str, float]:
    names = [await layer.new_channel() for _ in range(members)]
    for name in names:
        await layer.group_add("bench-w5", name)
    pending = [asyncio.ensure_future(layer.receive(n)) for n in names]  # subscribe all
    await asyncio.sleep(SUBSCRIBE)
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send("bench-w5", MESSAGE)
    got = len(await asyncio.gather(*pending))
    for name in names:
        for _ in range(sends - 1):  # all queued already: no wait_for task each time
            await layer.receive(name)
            got += 1
    elapsed = time.perf_counter() - start
    if got != members * sends:
        raise SystemExit(f"W5: {got} deliveries, expected {members * sends}")
    return {"delivered/s": got / elapsed}


# ------------------------------------------------------------------ children


async def producer(layer: Any, count: int) -> None:
    for i in range(count):
        await layer.send("bench.w3", {"type": "w3", "i": i})


async def echo(layer: Any, rounds: int) -> None:
    ping = await subscribed(layer, "bench.w4.ping")
    await layer.send("bench.w4.pong", {"type": "ready", "i": -1})  # parent is subscribed
    message = await asyncio.wait_for(ping, 60)
    for i in range(rounds):
        await layer.send("bench.w4.pong", message)
        if i < rounds - 1:
            message = await asyncio.wait_for(layer.receive("bench.w4.ping"), 60)


# ------------------------------------------------------------------ driver


async def run_one(kind: str, workload: str, args: argparse.Namespace) -> dict[str, float]:
    prefix = f"b4{os.getpid()}{uuid.uuid4().hex[:8]}"
    layer = make_layer(kind, prefix, args.redis)
    try:
        if workload == "W2":
            return await w2(layer, args.count)
        if workload == "W3":
            return await w3(layer, kind, prefix, args.redis, args.count)
        if workload == "W4":
            return await w4(layer, kind, prefix, args.redis, args.rounds)
        if workload == "W5":
            return await w5(layer, args.members, args.sends)
        raise SystemExit(f"unknown workload {workload!r}")
    finally:
        await close(layer)
        if kind == "chanlite-ipc":
            from chanlite.layers.ipc import IPCChannelLayer

            IPCChannelLayer.remove_prefix(prefix)


def redis_reason(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        import channels_redis  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure: leave the columns out
        return f"{exc!r}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--workloads", default="W2,W3,W4,W5")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--count", type=int, default=10_000, help="W2 pairs, W3 messages")
    parser.add_argument("--rounds", type=int, default=1_000, help="W4 round trips")
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--sends", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if args.child:
        layer = make_layer(args.layers, args.prefix, args.redis)
        role: Callable[[Any, int], Awaitable[None]] = producer if args.child == "producer" else echo

        async def go() -> None:
            try:
                await role(layer, args.count)
            finally:
                if hasattr(layer, "close_sync"):
                    layer.close_sync()  # the parent removes the segment
                elif hasattr(layer, "close_pools"):
                    await layer.close_pools()  # flush would delete unread messages
                else:
                    await close(layer)

        asyncio.run(go())
        return
    kinds = args.layers.split(",")
    reason = redis_reason(args.redis) if any(k.startswith("redis") for k in kinds) else None
    if reason:
        print(f"channels_redis columns left out: no Redis/channels_redis ({reason})",
              file=sys.stderr)
        kinds = [k for k in kinds if not k.startswith("redis")]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for workload in args.workloads.split(","):
        for _ in range(args.repeat):  # rounds alternate the layers
            for kind in kinds:
                if workload in ("W3", "W4") and kind not in SHARED:
                    continue
                figures = asyncio.run(run_one(kind, workload, args))
                for metric, value in figures.items():
                    results.setdefault(f"{workload} {metric}", {}).setdefault(kind, [])
                    results[f"{workload} {metric}"][kind].append(value)
    medians = {row: {k: statistics.median(v) for k, v in cols.items()}
               for row, cols in results.items()}
    if args.json:
        print(json.dumps(medians, indent=1))
        return
    print(f"median of {args.repeat} runs; last column: chanlite-ipc vs redis-pubsub "
          "(>1: chanlite ahead, for latencies too)")
    print(f"| workload | {' | '.join(kinds)} | vs redis-pubsub |")
    print(f"|---|{'---|' * len(kinds)}---|")
    for row, cols in medians.items():
        cells = [f"{cols[k]:,.0f}" if k in cols else "n/a" for k in kinds]
        ours, pubsub = cols.get("chanlite-ipc"), cols.get("redis-pubsub")
        if ours and pubsub:
            ratio = pubsub / ours if row.endswith("_us") else ours / pubsub
            cells.append(f"{ratio:.2f}x")
        else:
            cells.append("n/a")
        print(f"| {row} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
