"""Channel-layer benchmarks with printed, comparable figures.

Why this shape: the same workloads must run on any layer — chanlite's own
layers and, for comparison, asgiref 1.1.2's in-memory layer, which cannot be
installed next to Django's asgiref and therefore runs in *another* Python
(``--baseline-python``). So this file imports only the standard library at
module level and loads the layer under test from a dotted path; the baseline
is this same script re-run by the other interpreter with ``--json``.

Usage::

    python bench/layers.py chanlite.layers.memory.InMemoryChannelLayer \\
        --kw capacity=100000 --workloads W1,W2,W5 --repeat 5 \\
        --baseline-python .nox/asgiref112/bin/python

``--kw key=value`` values are Python literals (``capacity=100000``,
``expiry=30.5``, ``channel_capacity={'a*': 5}``) or else plain strings.

Adding a workload: write ``def wN_name(layer_factory) -> dict[str, float]``
that builds a fresh layer with ``layer_factory()``, times the work with
``timer()`` (this module's clock) and returns ``{metric: rate}`` (rates per second, higher
is better; for latencies return the value and name the metric ``..._us`` —
the ratio column then reads "lower is better"; ``{}`` if the workload does not
apply to the layer, e.g. a cross-process workload on the in-memory layer). Register it in
:data:`WORKLOADS` with its key (W3, W4, W6 ...); ``--workloads`` selects by key.
Only the layer's public ASGI 1.0 API may be used (``send``, ``receive`` with
``block=False``, ``group_add``, ``send_group``), so the baseline can run it too.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LayerFactory = Callable[[], Any]

#: The clock the workloads time themselves with. ``--timer cpu`` switches to
#: this process's CPU time: on a shared machine, wall time mostly measures the
#: neighbours; CPU time of a single-threaded workload does not (cross-process
#: or blocking workloads must keep wall time).
TIMERS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
timer: Callable[[], float] = time.perf_counter

#: A small message, like an ``http.request`` header-only body, reused by every
#: send: layers copy (msgpack or deepcopy) so reuse does not help them.
MESSAGE: dict[str, Any] = {
    "reply_channel": "http.response!c4Kx9aQ2",
    "path": "/chat/room-1/",
    "text": "hello, world",
    "order": 0,
}


def w1_backlog(layer_factory: LayerFactory, count: int = 20_000) -> dict[str, float]:
    """Send ``count`` messages to one channel, then receive them all."""
    layer = layer_factory()
    send, receive, message, channels = layer.send, layer.receive, MESSAGE, ["bench.w1"]
    start = timer()
    for _ in range(count):
        send("bench.w1", message)
    middle = timer()
    got = 0
    for _ in range(count):
        if receive(channels)[0] is not None:
            got += 1
    end = timer()
    _expect(got, count, "W1")
    return {"sends/s": count / (middle - start), "receives/s": count / (end - middle)}


def w2_pairs(layer_factory: LayerFactory, count: int = 20_000) -> dict[str, float]:
    """Interleave one send and one receive on the same channel, ``count`` times."""
    layer = layer_factory()
    send, receive, message, channels = layer.send, layer.receive, MESSAGE, ["bench.w2"]
    got = 0
    start = timer()
    for _ in range(count):
        send("bench.w2", message)
        if receive(channels)[0] is not None:
            got += 1
    end = timer()
    _expect(got, count, "W2")
    return {"pairs/s": count / (end - start)}


def w5_fanout(
    layer_factory: LayerFactory, members: int = 100, sends: int = 200
) -> dict[str, float]:
    """``sends`` group sends to ``members`` channels, then every member drains
    its channel; the rate counts deliveries over the send *and* receive time."""
    layer = layer_factory()
    names = [f"bench.w5.member{i}" for i in range(members)]
    for name in names:
        layer.group_add("bench-w5", name)
    send_group, receive, message = layer.send_group, layer.receive, MESSAGE
    start = timer()
    for _ in range(sends):
        send_group("bench-w5", message)
    got = 0
    for name in names:
        channels = [name]
        for _ in range(sends):
            if receive(channels)[0] is not None:
                got += 1
    end = timer()
    _expect(got, members * sends, "W5")
    return {"delivered/s": got / (end - start)}


def w5p_fanout_process(
    layer_factory: LayerFactory, members: int = 100, sends: int = 200, burst: int = 50
) -> dict[str, float]:
    """W5 as consumers meet it: the ``members`` are process-specific channels
    (``new_channel("bench.w5!")``: reply channels of one interface server,
    one queue ``bench.w5!``), ``burst`` group sends then a drain, until
    ``sends``; delivered/s over the send and receive time. The burst keeps
    the backlog (members x burst) under the default process capacity."""
    layer = layer_factory()
    names = [layer.new_channel("bench.w5!") for _ in range(members)]
    for name in names:
        layer.group_add("bench-w5p", name)
    send_group, receive, message, channels = layer.send_group, layer.receive, MESSAGE, ["bench.w5!"]
    got = 0
    start = timer()
    for _ in range(sends // burst):
        for _ in range(burst):
            send_group("bench-w5p", message)
        for _ in range(members * burst):
            if receive(channels)[0] is not None:
                got += 1
    end = timer()
    for name in names:  # the next run's factory may reuse this layer's storage
        layer.group_discard("bench-w5p", name)
    _expect(got, members * (sends // burst) * burst, "W5P")
    return {"delivered/s": got / (end - start)}


def w7_body_codec(layer_factory: LayerFactory, count: int = 20_000) -> dict[str, float]:
    """What one message body costs the CPU on its way through a layer, no I/O:
    ``layer.encode`` (validate, msgpack and — with the Redis layer's
    ``symmetric_encryption_keys`` — seal), then the receive side (``open_body``
    where the layer has it, then ``decode``). Run the Redis layer with and
    without keys: the difference is the encryption cost per message."""
    layer = layer_factory()
    encode, decode = getattr(layer, "encode", None), getattr(layer, "decode", None)
    if encode is None or decode is None:
        return {}  # not a chanlite layer (the asgiref baseline)
    open_body = getattr(layer, "open_body", None) or (lambda data: data)
    message = MESSAGE
    start = timer()
    for _ in range(count):
        if decode(open_body(encode(message))) is None:
            raise SystemExit("W7: a body did not survive encode/open/decode")
    end = timer()
    return {"per_msg_us": (end - start) / count * 1e6}


def _expect(got: int, wanted: int, workload: str) -> None:
    if got != wanted:
        raise SystemExit(f"{workload}: received {got} messages, expected {wanted}; layer is lossy?")


@dataclass(frozen=True)
class Workload:
    title: str
    run: Callable[[LayerFactory], dict[str, float]]


#: Workloads by key; add W3 (cross-process stream), W4 (ping-pong p50/p99),
#: W6 (W2 with 10 KB payloads) ... here.
WORKLOADS: dict[str, Workload] = {
    "W1": Workload("backlog: 20 000 sends to one channel, then 20 000 receives", w1_backlog),
    "W2": Workload("interleaved send/receive pairs (20 000)", w2_pairs),
    "W5": Workload("group fan-out: 100 members x 200 group sends, then drain", w5_fanout),
    "W5P": Workload("group fan-out to 100 process-specific channels (a!x), 4 x (50 group "
                    "sends, then drain)", w5p_fanout_process),
    "W7": Workload("body codec: encode + open + decode one message, no I/O (µs)",
                   w7_body_codec),
}

# Cross-process workloads (W3, W4 with a multiprocessing.Queue baseline), W6
# and W1 at several backlogs live in bench/ipc_workloads.py.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ipc_workloads  # noqa: E402

ipc_workloads.register(WORKLOADS, Workload, w1_backlog, w2_pairs, MESSAGE)


# ----------------------------------------------------------------- running


def parse_kw(items: list[str]) -> dict[str, Any]:
    """``["capacity=100", "name=x"]`` -> ``{"capacity": 100, "name": "x"}``."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--kw takes key=value, not {item!r}")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw
    return kwargs


def load_factory(path: str, kwargs: dict[str, Any]) -> LayerFactory:
    """A zero-argument callable building a fresh layer ``path(**kwargs)``."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise SystemExit(f"layer must be a dotted path like pkg.module.Class, not {path!r}")
    cls = getattr(importlib.import_module(module_name), attr)
    cls(**kwargs)  # fail early on bad kwargs
    return lambda: cls(**kwargs)


def run_workloads(
    factory: LayerFactory, keys: list[str], repeat: int, warmup: int = 1
) -> dict[str, dict[str, list[float]]]:
    """Run each workload ``warmup + repeat`` times; return every measured rate."""
    results: dict[str, dict[str, list[float]]] = {}
    for key in keys:
        workload = WORKLOADS[key]
        for _ in range(warmup):
            workload.run(factory)
        runs: dict[str, list[float]] = {}
        for _ in range(repeat):
            gc.collect()
            for metric, value in workload.run(factory).items():
                runs.setdefault(metric, []).append(value)
        results[key] = runs
    return results


def run_baseline(
    python: str, layer: str, kw: list[str], keys: list[str], repeat: int, timer_name: str = "wall"
) -> dict[str, dict[str, list[float]]]:
    """Run this script under another interpreter and return its JSON results."""
    command = [python, os.path.abspath(__file__), layer, "--json", "--repeat", str(repeat)]
    command += ["--timer", timer_name]
    command += ["--workloads", ",".join(keys)]
    for item in kw:
        command += ["--kw", item]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"baseline run failed ({' '.join(command)}):\n{done.stderr}")
    return json.loads(done.stdout)


def merge(into: dict[str, dict[str, list[float]]], more: dict[str, dict[str, list[float]]]) -> None:
    """Append the rates of ``more`` to ``into`` (workload -> metric -> rates)."""
    for key, metrics in more.items():
        for metric, values in metrics.items():
            into.setdefault(key, {}).setdefault(metric, []).extend(values)


def _fmt(value: float, metric: str) -> str:
    return f"{value:,.1f}" if metric.endswith("_us") else f"{value:,.0f}"


def print_table(
    title: str,
    results: dict[str, dict[str, list[float]]],
    baseline: dict[str, dict[str, list[float]]] | None,
) -> None:
    """Medians per workload and metric, with the ratio to the baseline."""
    print(title)
    header = f"{'workload':<9}{'metric':<14}{'median':>12}{'runs':>6}"
    if baseline is not None:
        header += f"{'baseline':>12}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for key, metrics in results.items():
        for metric, values in metrics.items():
            median = statistics.median(values)
            line = f"{key:<9}{metric:<14}{_fmt(median, metric):>12}{len(values):>6}"
            if baseline is not None and metric in baseline.get(key, {}):
                base = statistics.median(baseline[key][metric])
                ratio = base / median if metric.endswith("_us") else median / base
                line += f"{_fmt(base, metric):>12}{ratio:>7.2f}x"
            print(line)
    for key in results:
        print(f"  {key}: {WORKLOADS[key].title}")


def record(
    path: str,
    argv: list[str],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    results: dict[str, dict[str, list[float]]],
    baseline: dict[str, dict[str, list[float]]] | None,
) -> None:
    """Write one run as JSON: what ``bench/report.py`` renders into the docs.

    Why every rate and not only medians: the report computes medians and
    ratios itself, so a table can never disagree with the run it names.
    """
    import platform
    import shlex
    from datetime import UTC, datetime

    data = {
        "command": "python bench/layers.py " + shlex.join(argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus",
        "timer": args.timer,
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in load_after]},
        "layer": args.layer,
        "baseline": args.baseline_layer if args.baseline_python else args.baseline,
        "titles": {key: WORKLOADS[key].title for key in results},
        "results": results,
        "baseline_results": baseline,
    }
    with open(path, "w") as out:
        json.dump(data, out, indent=1)
        out.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark a channel layer (median rates; higher is better).",
        epilog="Example: python bench/layers.py chanlite.layers.memory.InMemoryChannelLayer "
        "--kw capacity=100000 --baseline-python .nox/asgiref112/bin/python",
    )
    parser.add_argument("layer", nargs="?",
                        help="dotted path of the layer class (not with --peers)")
    parser.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE",
                        help="layer keyword argument (repeatable; value is a Python literal)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated keys (default: all of {','.join(WORKLOADS)})")
    parser.add_argument("--repeat", "--rounds", type=int, default=5,
                        help="measured runs (rounds) per workload")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs per workload")
    parser.add_argument("--baseline-python", metavar="PATH",
                        help="interpreter with asgiref==1.1.2 installed: run the same "
                        "workloads on the baseline layer there and print ratios")
    parser.add_argument("--baseline-layer", default="asgiref.inmemory.ChannelLayer")
    parser.add_argument("--baseline-kw", action="append", default=None, metavar="KEY=VALUE",
                        help="baseline layer kwargs (default: capacity=100000)")
    parser.add_argument("--baseline", choices=["redis", "redis-raw", "channels-redis",
                                               "channels-redis-pubsub"],
                        help="compare with bare redis-py LPUSH/BLPOP loops "
                        "(bench/redis_baseline.py) on --baseline-url, in alternating rounds; "
                        "'redis-raw' uses redis-py's "
                        "bare Connection instead of redis.Redis; 'channels-redis(-pubsub)' runs "
                        "W5P on channels_redis's core (pub/sub) layer, if installed")
    parser.add_argument("--baseline-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--timer", choices=sorted(TIMERS), default="wall",
                        help="wall: elapsed time (default); cpu: this process's CPU time, "
                        "steadier on a shared machine for these single-threaded workloads")
    parser.add_argument("--json", action="store_true",
                        help="print raw results as JSON (used for the baseline run)")
    parser.add_argument("--record", metavar="PATH",
                        help="also write the run (command, date, load average, every rate, "
                        "the baseline's) as JSON to PATH; bench/report.py turns recorded "
                        "runs into the tables of docs/performance.md")
    parser.add_argument("--peers", action="store_true",
                        help="run chanlite's Redis and IPC layers against channels_redis (core "
                        "and pub/sub, on --baseline-url) and multiprocessing.Queue, rounds "
                        "interleaved (bench/layer_peers.py); --record writes a 'table' JSON")
    parser.add_argument("--peers-python", metavar="PATH", default=sys.executable,
                        help="interpreter with channels_redis installed (default: this one)")
    args = parser.parse_args(argv)
    if args.peers:
        return _peers(args, argv if argv is not None else sys.argv[1:])
    if not args.layer:
        parser.error("give the layer's dotted path, or --peers")

    keys = [key.strip().upper() for key in args.workloads.split(",") if key.strip()]
    unknown = [key for key in keys if key not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    global timer
    timer = TIMERS[args.timer]
    load_before = os.getloadavg()
    factory = load_factory(args.layer, parse_kw(args.kw))
    if args.json:
        print(json.dumps(run_workloads(factory, keys, args.repeat, args.warmup)))
        return 0

    baseline = None
    base_run: Callable[[int], dict[str, dict[str, list[float]]]] | None = None
    base_name = f"{args.baseline_layer} under {args.baseline_python}"
    if args.baseline_python:
        base_kw = args.baseline_kw if args.baseline_kw is not None else ["capacity=100000"]
        base_run = lambda warmup: run_baseline(  # noqa: E731
            args.baseline_python, args.baseline_layer, base_kw, keys, 1, args.timer)
    elif args.baseline:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import redis_baseline

        base_name = f"bare redis-py {args.baseline} loops on {args.baseline_url}"
        if args.baseline.startswith("channels-redis"):
            base_name = f"{args.baseline} on {args.baseline_url}"
        base_run = lambda warmup: redis_baseline.run(  # noqa: E731
            keys, 1, warmup, args.baseline_url, raw=args.baseline == "redis-raw",
            peer=args.baseline if args.baseline.startswith("channels-redis") else None)
    if base_run is not None:
        # Alternate rounds (baseline, then ours) so that on a shared, noisy
        # machine both see the same background load; medians over rounds.
        results: dict[str, dict[str, list[float]]] = {}
        baseline = {}
        for round_ in range(args.repeat):
            merge(baseline, base_run(args.warmup if round_ == 0 else 0))
            merge(results, run_workloads(factory, keys, 1, args.warmup if round_ == 0 else 0))
    else:
        results = run_workloads(factory, keys, args.repeat, args.warmup)
    # Layers backed by a server (Redis) must leave nothing behind.
    leftover = factory()
    for method in ("flush", "close"):
        if hasattr(leftover, method):
            getattr(leftover, method)()
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {args.timer} time, "
          f"load average {' '.join(f'{x:.1f}' for x in load)}")
    if args.record:
        record(args.record, argv if argv is not None else sys.argv[1:], args, load_before,
               load, results, baseline)
    title = f"{args.layer} {' '.join(args.kw)}"
    if baseline is not None:
        title += f"   (baseline: {base_name})"
    print_table(title, results, baseline)
    return 0


def _peers(args: argparse.Namespace, argv: list[str]) -> int:
    """``--peers``: the side-by-side table of bench/layer_peers.py."""
    import shlex

    import layer_peers

    if args.layer or args.baseline_python or args.baseline:
        raise SystemExit("--peers takes no layer and no --baseline*: it runs its own set "
                         "(chanlite Redis + IPC, channels_redis core + pub/sub, "
                         "multiprocessing.Queue)")
    if args.repeat < 1:
        raise SystemExit("--rounds must be at least 1")
    table = layer_peers.run_peers(
        args.repeat, args.peers_python, args.baseline_url, list(layer_peers.IMPLS),
        "python bench/layers.py " + shlex.join(argv), args.record)
    layer_peers.print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
