"""``bench/server.py --peers``: the same workloads on chanlite and its peers,
interleaved round by round, as one table of medians and ratios.

Why interleaved: the development machine is shared, and its load moves rates
by 2x between minutes. Each round runs every workload on every server in
turn (a fresh server process per workload and server), so a ratio compares
figures taken in the same minute. ``--record PATH`` writes the shared
"table" JSON that bench/report.py renders into docs/performance.md.

Peers (installed in their own venv by ``nox -s bench-peers``; run this with
that venv's Python): Daphne + Channels 4 and uvicorn + Channels 4 (async
consumers, Channels' in-memory layer), waitress and gunicorn gthread (HTTP
only), all serving the same Django project (bench/server_project.py).
One process each, 8 threads for the WSGI servers, as ``chanlite serve``
(one process, 2 embedded workers, 8 WSGI threads).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import server as bench  # bench/server.py (this directory is on sys.path)

HTTP = ("http", "http1")
WS = ("echo1", "echo100", "broadcast", "idle")

#: column -> (modules it needs, workloads it serves, command(python, port))
PEERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[str, int], list[str]]]] = {
    "chanlite": ((), HTTP + WS + ("idle-big",), lambda py, port: [
        py, "-m", "chanlite.server", "serve", "bench.server_project:channel_layer",
        "--port", str(port), "--workers", "2", "--http-threads", "8", "--log-level", "WARNING",
        "--max-connections", "60000"]),
    "chanlite runserver": ((), HTTP + WS, lambda py, port: [
        py, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"]),
    "Daphne + Channels 4": (("daphne", "channels"), HTTP + WS, lambda py, port: [
        py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0",
        "bench.server_project:asgi_application"]),
    "uvicorn + Channels 4": (("uvicorn", "channels"), HTTP + WS, lambda py, port: [
        py, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level",
        "warning", "--no-access-log", "bench.server_project:asgi_application"]),
    "waitress": (("waitress",), HTTP, lambda py, port: [
        py, "-m", "waitress", "--host", "127.0.0.1", f"--port={port}", "--threads", "8",
        "bench.server_project:wsgi_application"]),
    "gunicorn gthread": (("gunicorn",), HTTP, lambda py, port: [
        py, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "8", "-b",
        f"127.0.0.1:{port}", "--log-level", "warning", "bench.server_project:wsgi_application"]),
}
BEFORE = "chanlite before"  # the --before column
DEFAULT_PEERS = ("chanlite", "Daphne + Channels 4", "uvicorn + Channels 4", "waitress",
                 "gunicorn gthread")

#: (workload, figure key, row title, unit, higher is better)
ROWS = [
    ("http", "http_50conn_req_s", "HTTP hello, 50 conns", "req/s", True),
    ("http", "http_50conn_p50_ms", "HTTP hello, 50 conns, p50", "ms", False),
    ("http1", "http_1conn_req_s", "HTTP hello, 1 conn", "req/s", True),
    ("http1", "http_1conn_p50_ms", "HTTP hello, 1 conn, p50", "ms", False),
    ("http1", "http_1conn_p99_ms", "HTTP hello, 1 conn, p99", "ms", False),
    ("echo1", "echo_1client_p50_ms", "WS echo, 1 client, p50", "ms", False),
    ("echo100", "echo_100clients_msgs_s", "WS echo, 100 clients", "msgs/s", True),
    ("broadcast", "broadcast_delivered_s", "broadcast to 100 clients", "delivered/s", True),
    ("idle", "idle_kb_per_ws", "idle WebSocket", "KB each", False),
    ("idle", "idle_open_per_s", "idle WebSockets opened", "per s", True),
    ("idle-big", "big_idle_kb_per_ws", "idle WebSocket", "KB each", False),
    ("idle-big", "big_idle_open_per_s", "idle WebSockets opened", "per s", True),
    # Server CPU per operation (all its processes): moves far less than rates
    # when other jobs share the machine.
    ("http", "http_cpu_us", "server CPU per request, 50 conns", "µs", False),
    ("http1", "http1_cpu_us", "server CPU per request, 1 conn", "µs", False),
    ("echo1", "echo1_cpu_us", "server CPU per echo, 1 client", "µs", False),
    ("echo100", "echo100_cpu_us", "server CPU per echo, 100 clients", "µs", False),
    ("broadcast", "broadcast_cpu_us", "server CPU per broadcast delivery", "µs", False),
    ("idle", "idle_cpu_us", "server CPU per WebSocket opened", "µs", False),
    ("idle-big", "idle-big_cpu_us", "server CPU per WebSocket opened", "µs", False),
]


def raise_open_files(want: int = 65536) -> str:
    """Raise this process's open-file limit (inherited by every server and
    client it starts) so ``--idle 20000`` fits: root may raise the hard limit
    too; otherwise the soft limit goes up to the hard one. Says what it did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    new = resource.getrlimit(resource.RLIMIT_NOFILE)
    if new[1] < want:
        return (f"open-file limit: the bench asked setrlimit for {want:,} and got "
                f"{new[0]:,}/{new[1]:,} (soft/hard; the hard limit cannot be raised here)")
    return (f"open-file limit raised by the bench (setrlimit) from {soft:,}/{hard:,} "
            f"to {new[0]:,}/{new[1]:,}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PeerProcess(bench.ServerProcess):
    """One server of one column, on a free port, with bench.ServerProcess's
    RSS / CPU / stop helpers."""

    def __init__(self, column: str, python: str, tree: str | None = None) -> None:  # noqa: D107
        self.port = free_port()
        self.forks = column.startswith("gunicorn")  # its worker is a child process
        root = tree or str(bench.ROOT)  # another checkout: its chanlite and project
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.server_project",
                   PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        if "Channels 4" in column:
            env["BENCH_STACK"] = "channels4"
        command = PEERS["chanlite" if tree else column][2](python, self.port)
        self.proc = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{column} exited: " + (self.proc.stderr.read() or ""))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{column} did not listen on {self.port} within 60 s")

    def cpu_seconds(self) -> float:
        """CPU of the server and, for gunicorn, its worker process, so far."""
        if not self.forks:
            return super().cpu_seconds()
        total = 0.0
        pids = [self.proc.pid]
        while pids:
            pid = pids.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue  # exited meanwhile
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        # stderr is a pipe nobody reads while the server runs: a chatty peer
        # must not block on it, so it is only drained here.
        super().stop()
        self.proc.stderr.close()


def wrk(port: int, conns: int, duration: int) -> dict[str, float]:
    """``wrk -c conns``: req/s, p50 and p99 in ms, and the request count."""
    out = subprocess.run(
        ["wrk", f"-t{min(2, conns)}", f"-c{conns}", f"-d{duration}s", "--latency",
         f"http://127.0.0.1:{port}/hello/"], capture_output=True, text=True, check=True).stdout
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(label: str) -> float:
        m = re.search(label + r"\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * scale[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise RuntimeError("wrk saw errors: " + errors.group(0))
    return {"req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency("50%"), "p99": latency("99%"),
            "ops": int(re.search(r"(\d+) requests in", out).group(1))}


def run_workload(name: str, server: PeerProcess, args) -> dict[str, float]:
    if name == "http":
        r = wrk(server.port, 50, args.duration)
        return {"http_50conn_req_s": r["req_s"], "http_50conn_p50_ms": r["p50"], "_ops": r["ops"]}
    if name == "http1":
        r = wrk(server.port, 1, max(3, args.duration // 2))
        return {"http_1conn_req_s": r["req_s"], "http_1conn_p50_ms": r["p50"],
                "http_1conn_p99_ms": r["p99"], "_ops": r["ops"]}
    if name == "echo1":
        return bench.echo_one(server.port)
    if name == "echo100":
        return bench.echo_many(server.port, args.duration)
    if name == "broadcast":
        figures = bench.broadcast(server.port)
        if figures["broadcast_clients_incomplete"]:
            raise RuntimeError(f"broadcast: {figures['broadcast_clients_incomplete']} "
                               "clients did not get every message")
        return figures
    if name in ("idle", "idle-big"):
        figures = bench.idle(server, total=args.idle if name == "idle" else args.idle_big)
        figures["idle_open_per_s"] = figures["idle_ws"] / figures["idle_open_s"]
        if name == "idle-big":  # chanlite only: what a server of ours holds at scale
            figures = {k if k.startswith("_") else "big_" + k: v for k, v in figures.items()}
        return figures
    raise SystemExit(f"unknown workload {name!r}")


def available(column: str, python: str) -> str | None:
    """None if ``column`` can run here, else why not."""
    if column not in PEERS:
        raise SystemExit(f"unknown server {column!r}; choose from {', '.join(PEERS)}")
    missing = [m for m in PEERS[column][0]
               if (importlib.util.find_spec(m) is None if python == sys.executable else
                   subprocess.run([python, "-c", f"import {m}"], capture_output=True).returncode)]
    return f"not importable: {', '.join(missing)}" if missing else None


def run_peers(args) -> None:
    limit_note = raise_open_files()
    print(limit_note, flush=True)
    python = args.python or sys.executable
    columns = [c.strip() for c in args.servers.split(",")]
    for column in list(columns):
        reason = available(column, python)
        if reason:
            print(f"{column} left out: {reason} (run with the venv of `nox -s bench-peers`)",
                  file=sys.stderr)
            columns.remove(column)
    trees = {}
    if args.before:  # a before/after column: chanlite from another checkout
        trees[BEFORE] = os.path.abspath(args.before)
        columns.insert(1, BEFORE)
    workloads = [w for w in ("http", "http1", "echo1", "echo100", "broadcast", "idle")
                 if w in args.only.split(",")]
    if args.idle_big and "idle" in workloads:
        workloads.append("idle-big")
    if {"http", "http1"} & set(workloads) and not shutil.which("wrk"):
        raise SystemExit("--peers needs wrk for HTTP (apt-get install wrk): a Python client "
                         "would be the bottleneck at 50 connections")
    values: dict[str, dict[str, list[float]]] = {}
    failures: list[str] = []
    load_before = list(os.getloadavg())
    started = datetime.datetime.now(datetime.UTC)
    for rnd in range(args.rounds):
        for name in workloads:
            for column in columns:
                if column not in trees and name not in PEERS[column][1]:
                    continue
                try:
                    server = PeerProcess(column, python, trees.get(column))
                except RuntimeError as exc:
                    failures.append(f"round {rnd + 1} {name} {column}: {exc}")
                    print(failures[-1], file=sys.stderr, flush=True)
                    continue
                try:
                    cpu = server.cpu_seconds()
                    figures = run_workload(name, server, args)
                    if figures.get("_ops"):
                        figures[f"{name}_cpu_us"] = ((server.cpu_seconds() - cpu)
                                                     / figures["_ops"] * 1e6)
                except Exception as exc:  # noqa: BLE001 - one failure must not lose the run
                    # (e.g. a peer refusing handshakes under load): said in the table
                    failures.append(f"round {rnd + 1} {name} {column}: {exc!r}")
                    print(failures[-1], file=sys.stderr, flush=True)
                    continue
                finally:
                    server.stop()
                shown = {k: round(v, 3) for k, v in figures.items()
                         if not k.startswith("_") and isinstance(v, float)}
                print(f"round {rnd + 1} {name:9} {column:22} {shown}  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
                for key, value in figures.items():
                    values.setdefault(key, {}).setdefault(column, []).append(value)
    load_after = list(os.getloadavg())
    rows = []
    for workload, key, title, unit, higher in ROWS:
        if workload in workloads and key in values:
            if workload.startswith("idle"):
                count = args.idle if workload == "idle" else args.idle_big
                title = (f"{title} ({count:,} open)" if "per WebSocket" not in title
                         else f"{title} ({count:,} opened)")
            rows.append({"figure": title, "unit": unit, "higher_is_better": higher,
                         "values": {c: [round(v, 4) for v in vs]
                                    for c, vs in values[key].items()}})
    command = " ".join(["python", "bench/server.py", "--peers", *sys.argv[1:]]
                       if "--peers" not in sys.argv else ["python", "bench/server.py",
                                                          *sys.argv[1:]])
    table = {"kind": "table", "title": "chanlite's server against its peers",
             "command": command, "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
                        "shared with other jobs",
             "load_before": [round(x, 2) for x in load_before],
             "load_after": [round(x, 2) for x in load_after],
             "ours": "chanlite", "columns": columns, "rows": rows,
             "notes": [limit_note, *(["failed (no figure for that round): " + "; ".join(failures)]
                                     if failures else [])]}
    print_table(table)
    if args.record:
        with open(args.record, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
        print(f"recorded {args.record}")


def print_table(table: dict) -> None:
    columns = table["columns"]
    print(f"\nmedians of {len(next(iter(table['rows']))['values']['chanlite'])} rounds "
          f"(load {table['load_before'][0]:.1f} -> {table['load_after'][0]:.1f}); "
          "ratio: chanlite / best peer, >1 = chanlite better")
    print(f"{'figure':42}" + "".join(f"{c[:22]:>24}" for c in columns) + f"{'ratio':>8}")
    for row in table["rows"]:
        med = {c: statistics.median(v) for c, v in row["values"].items()}
        peers = [v for c, v in med.items() if c not in ("chanlite", BEFORE)]
        best = (max if row["higher_is_better"] else min)(peers) if peers else None
        ours = med.get("chanlite")
        ratio = "" if best is None or ours is None else (
            f"{ours / best:.2f}" if row["higher_is_better"] else f"{best / ours:.2f}")
        print(f"{row['figure'] + ', ' + row['unit']:42}" +
              "".join(f"{med[c]:>24,.3f}" if c in med else f"{'-':>24}" for c in columns) +
              f"{ratio:>8}")
