"""Channel layers against their peers: ``python bench/layers.py --peers``.

Why a separate module: the peers are written each library's own way —
channels_redis (``RedisChannelLayer`` and ``RedisPubSubChannelLayer``) is an
asyncio API used through ``new_channel()`` names, chanlite's layers are the
synchronous ASGI 1.0 API, ``multiprocessing.Queue`` is a pipe — so the
workloads are the same *shape* (same message, same counts, same checks
that nothing is lost) rather than the same code. Each implementation runs in
a fresh subprocess per round (``python bench/layer_peers.py run IMPL``), in
its own interpreter when the peers live in another venv (``--peers-python``),
and the rounds are interleaved — round 1 runs every implementation, then
round 2 in a rotated order, ... — so the medians share the machine's load.
The result is one "table" JSON (bench/report.py renders it).

Workloads (figures):

- Redis W2: 5 000 send/receive pairs in one process, one channel.
- Redis W4: ping-pong between two processes, 2 000 round trips (after 100
  warm-up rounds); p50 and p99. chanlite runs bench/ipc_workloads.py's W4
  (two named channels); channels_redis, whose consumers receive on
  ``new_channel()`` names, pings the echo process's such name and carries
  its own in the message.
- Redis W5: group fan-out — 100 members each on a process-specific channel
  (``a!x``: chanlite's reply channels, channels_redis's ``new_channel()``),
  200 group sends, then every message is received; deliveries per second
  over send *and* receive time.
- IPC W3: a producer process streams 20 000 messages to a consumer; chanlite's
  IPC layer, then ``multiprocessing.Queue`` in the same round.
- IPC W4: ping-pong between two processes, IPC layer vs ``multiprocessing.Queue``.

Redis is shared with other users: every run uses a fresh key prefix and
deletes only its own keys (``flush`` of that prefix); nothing else is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MESSAGE: dict[str, Any] = {"reply_channel": "http.response!c4Kx9aQ2", "path": "/chat/room-1/",
                           "text": "hello, world", "order": 0}
W2_PAIRS, W4_ROUNDS, W4_WARMUP, W5_MEMBERS, W5_SENDS = 5_000, 2_000, 100, 100, 200

CHANLITE, CORE, PUBSUB, MPQ = ("chanlite", "channels_redis core", "channels_redis pub/sub",
                               "multiprocessing.Queue")
COLUMNS = [CHANLITE, CORE, PUBSUB, MPQ]
#: figure -> (unit, higher is better)
FIGURES: dict[str, tuple[str, bool]] = {
    "Redis W2 send/receive pairs, 1 process": ("pairs/s", True),
    "Redis W4 ping-pong p50, 2 processes": ("µs", False),
    "Redis W4 ping-pong p99, 2 processes": ("µs", False),
    "Redis W5 group fan-out, 100 members × 200 sends": ("delivered/s", True),
    "IPC W3 stream, producer → consumer process": ("msgs/s", True),
    "IPC W4 ping-pong p50, 2 processes": ("µs", False),
    "IPC W4 ping-pong p99, 2 processes": ("µs", False),
}
W2, W4_50, W4_99, W5, IPC_W3, IPC_W4_50, IPC_W4_99 = FIGURES
#: implementation key -> interpreter role ("ours" runs under this Python,
#: "peers" under --peers-python, where channels_redis is installed)
IMPLS = {"chanlite-redis": "ours", "channels_redis-core": "peers",
         "channels_redis-pubsub": "peers", "chanlite-ipc": "ours"}


def _p50_p99(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def _fork(fn: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            fn()
        except BaseException as exc:  # the parent reports the lost round trip
            print(f"peer child failed: {exc!r}", file=sys.stderr)
            code = 1
        finally:
            os._exit(code)
    return pid


# ------------------------------------------------------------ chanlite (sync)


def _chanlite_redis(url: str, prefix: str) -> dict[str, dict[str, float]]:
    sys.path.insert(0, HERE)
    import ipc_workloads

    from chanlite.layers.redis import RedisChannelLayer

    def factory() -> Any:
        # process_capacity too: W5's 20 000 deliveries share one "bench.w5!" queue.
        return RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100_000,
                                 process_capacity=100_000)

    layer = factory()
    try:
        send, receive, channels = layer.send, layer.receive, ["bench.w2"]
        start = time.perf_counter()
        for _ in range(W2_PAIRS):
            send("bench.w2", MESSAGE)
            if receive(channels)[0] is None:
                raise SystemExit("chanlite Redis W2: a message sent was not received")
        w2 = W2_PAIRS / (time.perf_counter() - start)

        found = ipc_workloads._w4_layer(factory, W4_ROUNDS)
        if found is None:
            raise SystemExit("chanlite Redis W4: the layer is not shared between processes")
        p50, p99 = found

        members = [layer.new_channel("bench.w5!") for _ in range(W5_MEMBERS)]
        for member in members:
            layer.group_add("bench-w5", member)
        counts = dict.fromkeys(members, 0)
        start = time.perf_counter()
        for _ in range(W5_SENDS):
            layer.send_group("bench-w5", MESSAGE)
        for _ in range(W5_MEMBERS * W5_SENDS):
            channel, _ = receive(["bench.w5!"])
            if channel is None:
                raise SystemExit(f"chanlite Redis W5: only {sum(counts.values())} of "
                                 f"{W5_MEMBERS * W5_SENDS} messages arrived")
            counts[channel] += 1
        w5 = W5_MEMBERS * W5_SENDS / (time.perf_counter() - start)
        if set(counts.values()) != {W5_SENDS}:
            raise SystemExit(f"chanlite Redis W5: per-member counts {set(counts.values())}")
    finally:
        layer.flush()
        layer.close()
    return {CHANLITE: {W2: w2, W4_50: p50, W4_99: p99, W5: w5}}


def _chanlite_ipc(prefix: str) -> dict[str, dict[str, float]]:
    sys.path.insert(0, HERE)
    import ipc_workloads

    from chanlite.layers.ipc import IPCChannelLayer

    def factory() -> Any:
        return IPCChannelLayer(prefix=prefix, capacity=100_000)

    try:
        w3 = ipc_workloads.w3_stream(factory)
        w4 = ipc_workloads.w4_pingpong(factory)
    finally:
        IPCChannelLayer.remove_prefix(prefix)
    return {CHANLITE: {IPC_W3: w3["msgs/s"], IPC_W4_50: w4["p50_us"], IPC_W4_99: w4["p99_us"]},
            MPQ: {IPC_W3: w3["mpq msgs/s"], IPC_W4_50: w4["mpq p50_us"],
                  IPC_W4_99: w4["mpq p99_us"]}}


# ------------------------------------------------------ channels_redis (async)


def _peer_factory(impl: str, url: str, prefix: str) -> Callable[[], Any]:
    if impl == "channels_redis-core":
        from channels_redis.core import RedisChannelLayer

        return lambda: RedisChannelLayer(hosts=[url], prefix=prefix, capacity=100_000)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return lambda: RedisPubSubChannelLayer(hosts=[url], prefix=prefix)


async def _peer_w2(factory: Callable[[], Any], pubsub: bool) -> float:
    layer = factory()
    # pub/sub delivers only to subscribed channels: new_channel() subscribes.
    channel = await layer.new_channel() if pubsub else "bench.w2"
    start = time.perf_counter()
    for _ in range(W2_PAIRS):
        await layer.send(channel, MESSAGE)
        await asyncio.wait_for(layer.receive(channel), 30)  # a lost message fails the run
    rate = W2_PAIRS / (time.perf_counter() - start)
    await layer.flush()
    return rate


async def _peer_echo(factory: Callable[[], Any], write_fd: int) -> None:
    layer = factory()
    ping = await layer.new_channel()
    os.write(write_fd, ping.encode() + b"\n")
    for _ in range(W4_ROUNDS + W4_WARMUP):
        message = await asyncio.wait_for(layer.receive(ping), 30)
        await layer.send(message["reply"], message)


async def _peer_w4(factory: Callable[[], Any], read_fd: int) -> tuple[float, float]:
    layer = factory()
    pong = await layer.new_channel()
    ping = b""
    while not ping.endswith(b"\n"):
        chunk = os.read(read_fd, 200)  # the echo process's channel, once it listens
        if not chunk:
            raise SystemExit("W4: the echo process exited before naming its channel")
        ping += chunk
    ping_name = ping.decode().strip()
    samples = []
    for i in range(W4_ROUNDS + W4_WARMUP):
        start = time.perf_counter()
        await layer.send(ping_name, {"i": i, "reply": pong})
        message = await asyncio.wait_for(layer.receive(pong), 30)
        elapsed = time.perf_counter() - start
        if message["i"] != i:
            raise SystemExit(f"W4: round {i} got {message!r}")
        if i >= W4_WARMUP:
            samples.append(elapsed * 1e6)
    await layer.flush()
    return _p50_p99(samples)


async def _peer_w5(factory: Callable[[], Any]) -> float:
    layer = factory()
    members = [await layer.new_channel() for _ in range(W5_MEMBERS)]
    for member in members:
        await layer.group_add("bench-w5", member)
    start = time.perf_counter()
    for _ in range(W5_SENDS):
        await layer.group_send("bench-w5", MESSAGE)
    for _ in range(W5_SENDS):
        for member in members:  # each consumer takes its next message
            await asyncio.wait_for(layer.receive(member), 30)
    rate = W5_MEMBERS * W5_SENDS / (time.perf_counter() - start)
    await layer.flush()
    return rate


def _channels_redis(impl: str, url: str, prefix: str) -> dict[str, dict[str, float]]:
    factory = _peer_factory(impl, url, prefix)
    pubsub = impl.endswith("pubsub")
    w2 = asyncio.run(_peer_w2(factory, pubsub))
    read_fd, write_fd = os.pipe()
    # Fork before this process opens an event loop or a connection again:
    # the child builds its own layer, as a second worker process would.
    pid = _fork(lambda: asyncio.run(_peer_echo(factory, write_fd)))
    try:
        p50, p99 = asyncio.run(_peer_w4(factory, read_fd))
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(read_fd)
        os.close(write_fd)
    if status != 0:
        raise SystemExit(f"{impl} W4: the echo process failed (status {status})")
    w5 = asyncio.run(_peer_w5(factory))
    return {CORE if impl.endswith("core") else PUBSUB: {W2: w2, W4_50: p50, W4_99: p99, W5: w5}}


def run_one(impl: str, url: str) -> dict[str, dict[str, float]]:
    """One round of ``impl``: ``{column: {figure: value}}``."""
    prefix = f"peers{os.getpid()}{uuid.uuid4().hex[:6]}"
    if impl == "chanlite-redis":
        return _chanlite_redis(url, prefix)
    if impl == "chanlite-ipc":
        return _chanlite_ipc(prefix)
    return _channels_redis(impl, url, prefix)


# ------------------------------------------------------------------ driver


def _subprocess_round(python: str, impl: str, url: str) -> dict[str, dict[str, float]]:
    command = [python, os.path.abspath(__file__), "run", impl, "--url", url]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        hint = ""
        if "No module named 'channels_redis'" in done.stderr:
            hint = ("\nchannels_redis is not installed for that interpreter: "
                    "pip install channels_redis there, or pass --peers-python PATH "
                    "(nox -s bench-layer-peers builds such a venv)")
        raise SystemExit(f"{impl} failed ({' '.join(command)}):\n{done.stderr}{hint}")
    return json.loads(done.stdout)


def _versions(python: str, packages: list[str]) -> str:
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))")
    done = subprocess.run([python, "-c", code, *packages], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or f"versions unknown ({done.stderr.strip()[-200:]})"


def run_peers(rounds: int, peers_python: str, url: str, impls: list[str],
              command: str, record: str | None) -> dict[str, Any]:
    """Interleaved rounds of every implementation; the "table" JSON."""
    load_before = os.getloadavg()
    values: dict[str, dict[str, list[float]]] = {}
    for round_ in range(rounds):
        order = impls[round_ % len(impls):] + impls[:round_ % len(impls)]
        for impl in order:
            python = peers_python if IMPLS[impl] == "peers" else sys.executable
            for column, figures in _subprocess_round(python, impl, url).items():
                for figure, value in figures.items():
                    values.setdefault(figure, {}).setdefault(column, []).append(value)
            print(f"round {round_ + 1}/{rounds}: {impl} done", file=sys.stderr)
    load_after = os.getloadavg()
    table = {
        "kind": "table",
        "title": "Channel layers against their peers",
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
                   f"Python {sys.version.split()[0]}",
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "ours": CHANLITE,
        "columns": [c for c in COLUMNS if any(c in v for v in values.values())],
        "notes": [
            f"chanlite side: {_versions(sys.executable, ['chanlite', 'redis'])}; peers: "
            f"{_versions(peers_python, ['channels_redis', 'redis'])}; Redis at {url} "
            "(shared, fresh key prefix per run); every layer with capacity 100 000.",
            "Redis W2 on one named channel (pub/sub: a new_channel() name, as it only "
            "delivers to subscribed channels); W4 between two named channels for chanlite "
            "(bench/ipc_workloads.py's W4), new_channel() names for channels_redis; W5 on "
            "process-specific channels (chanlite a!x names, channels_redis new_channel()); "
            "IPC figures: 20 000 messages (W3) and 2 000 round trips (W4), the IPC layer "
            "then multiprocessing.Queue in the same round.",
        ],
        "rows": [{"figure": figure, "unit": FIGURES[figure][0],
                  "higher_is_better": FIGURES[figure][1], "values": values[figure]}
                 for figure in FIGURES if figure in values],
    }
    if record:
        with open(record, "w") as out:
            json.dump(table, out, indent=1, ensure_ascii=False)
            out.write("\n")
    return table


def print_table(table: dict[str, Any]) -> None:
    """Medians per column, as bench/report.py renders them into the docs."""
    sys.path.insert(0, HERE)
    import report

    print(report.render_table(table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("run", help="one round of one implementation, JSON on stdout")
    one.add_argument("impl", choices=sorted(IMPLS))
    one.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    print(json.dumps(run_one(args.impl, args.url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
