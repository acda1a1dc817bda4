"""Interface-server benchmarks: HTTP req/s and latency, WebSocket echo and broadcast, idle RSS.

Each workload starts a fresh ``chanlite serve bench.server_project:channel_layer``
process (in-memory layer, embedded workers) and drives it from *other*
processes so the load generator does not share the server's GIL. HTTP
throughput uses ``wrk`` when it is installed (a compiled tool, so the client
is not the bottleneck); otherwise a multi-process Python client. WebSocket
clients are minimal raw-socket clients (pre-built frames, zero masking key)
to keep client overhead low.

Usage::

    python bench/server.py                      # everything
    python bench/server.py --only http,echo1 --duration 5
    python bench/server.py --workers 2 --threads 8
    python bench/server.py --only echo1000 --duration 20   # default layer settings
    python bench/server.py --peers --rounds 3 --record bench/results/server-peers.json
    PYTHONPATH=/tmp/wt python bench/server.py --only http,http1 --against-waitress

Figures are printed as a table; record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import re
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b"x" * 100  # 100-byte messages, as in the peer figures


# ------------------------------------------------------------------ server


WAITRESS = (
    "import sys, django; django.setup(); import waitress;"
    "from django.core.wsgi import get_wsgi_application;"
    "waitress.serve(get_wsgi_application(), host='127.0.0.1', port=0, threads=int(sys.argv[1]),"
    " _quiet=True)"
)


class ServerProcess:
    def __init__(self, workers: int, threads: int, extra: list[str] | None = None,
                 waitress: bool = False, defaults: bool = False) -> None:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.server_project",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                            os.environ.get("PYTHONPATH")])))
        if defaults:  # a default install: layer without CONFIG, `chanlite serve` defaults
            env["BENCH_LAYER_DEFAULTS"] = "1"
        if waitress:  # the reference WSGI server, same project (must be importable)
            command = [sys.executable, "-c", WAITRESS, str(threads)]
        else:
            sizing = [] if defaults else ["--workers", str(workers), "--threads", str(threads)]
            command = [sys.executable, "-m", "chanlite.server", "serve",
                       "bench.server_project:channel_layer", "--port", "0", *sizing,
                       "--log-level", "WARNING", *(extra or [])]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE,
                                     text=True)
        # The server logs its address at INFO; WARNING hides it, so find the port in /proc.
        self.port = self._find_port()

    def _find_port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + (self.proc.stderr.read() or ""))
            out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                if f"pid={self.proc.pid}," in line:
                    return int(re.search(r":(\d+)\s", line).group(1))
            time.sleep(0.1)
        raise RuntimeError("server did not start listening within 30s")

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process used so far: unlike rates, this
        barely moves when other jobs share the machine."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------- tiny WS client


def ws_open(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                 b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("handshake: connection closed")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("handshake refused: " + data[:40].decode("latin-1"))
    return sock


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame with a zero key (valid, and no XOR work)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + b"\0\0\0\0" + payload


def parse_frames(buf: bytearray) -> int:
    """Remove complete server frames from ``buf``; return how many."""
    count = 0
    while len(buf) >= 2:
        n = buf[1] & 0x7F
        start = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack_from("!H", buf, 2)[0]
            start = 4
        if len(buf) < start + n:
            break
        del buf[: start + n]
        count += 1
    return count


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------- workloads


def http_wrk(port: int, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}/hello/"],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(\w+)", out)
    ops = int(re.search(r"(\d+) requests in", out).group(1))
    return {"http_50conn_req_s": rate, "http_50conn_p50": p50.group(1) + p50.group(2),
            "_ops": ops}


def _http_client(port: int, conns: int, duration: float, out: mp.Queue) -> None:
    request = b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sel = selectors.DefaultSelector()
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, bytearray())
        sock.send(request)
    done = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            buf = key.data
            buf += key.fileobj.recv(65536)
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    break
                m = re.search(rb"(?i)content-length: (\d+)", bytes(buf[:head_end]))
                total = head_end + 4 + int(m.group(1))
                if len(buf) < total:
                    break
                del buf[:total]
                done += 1
                key.fileobj.send(request)
    out.put(done)


def http_python(port: int, duration: int) -> dict:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_http_client, args=(port, 25, duration, out)) for _ in range(2)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=duration + 60) for _ in procs)
    for p in procs:
        p.join()
    return {"http_50conn_req_s": total / duration, "http_client": "python (no wrk)",
            "_ops": total}


def http_one_conn(port: int, count: int = 2000) -> dict:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    for i in range(count + 200):
        t0 = time.perf_counter()
        conn.request("GET", "/hello/")
        conn.getresponse().read()
        if i >= 200:
            latencies.append(time.perf_counter() - t0)
    conn.close()
    return {"http_1conn_p50_ms": statistics.median(latencies) * 1e3,
            "http_1conn_p99_ms": percentile(latencies, 0.99) * 1e3, "_ops": count + 200}


def echo_one(port: int, count: int = 3000) -> dict:
    sock = ws_open(port, "/echo/")
    message = frame(PAYLOAD)
    latencies = []
    buf = bytearray()
    for i in range(count + 300):
        t0 = time.perf_counter()
        sock.sendall(message)
        while not parse_frames(buf):
            buf += sock.recv(65536)
        if i >= 300:
            latencies.append(time.perf_counter() - t0)
    sock.close()
    return {"echo_1client_p50_ms": statistics.median(latencies) * 1e3,
            "echo_1client_p99_ms": percentile(latencies, 0.99) * 1e3,
            "echo_1client_msgs_s": len(latencies) / sum(latencies), "_ops": count + 300}


def _echo_clients(port: int, clients: int, duration: float, ready, go, out: mp.Queue) -> None:
    sel = selectors.DefaultSelector()
    message = frame(PAYLOAD)
    socks = [ws_open(port, "/echo/") for _ in range(clients)]
    ready.wait()
    go.wait()
    sent_at = {}
    latencies: list[float] = []
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, bytearray())
        sent_at[sock] = time.perf_counter()
        sock.send(message)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for key, _ in sel.select(0.5):
            sock, buf = key.fileobj, key.data
            buf += sock.recv(65536)
            for _ in range(parse_frames(buf)):
                now = time.perf_counter()
                latencies.append(now - sent_at[sock])
                sent_at[sock] = now
                sock.send(message)
    out.put(latencies)
    for sock in socks:
        sock.close()


def echo_many(port: int, duration: int, clients: int = 100, procs: int = 2) -> dict:
    out: mp.Queue = mp.Queue()
    ready = mp.Barrier(procs + 1)
    go = mp.Event()
    workers = [mp.Process(target=_echo_clients,
                          args=(port, clients // procs, duration, ready, go, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    ready.wait()
    go.set()
    latencies = [x for _ in workers for x in out.get(timeout=duration + 120)]
    for w in workers:
        w.join()
    return {f"echo_{clients}clients_msgs_s": len(latencies) / duration,
            f"echo_{clients}clients_p50_ms": statistics.median(latencies) * 1e3,
            f"echo_{clients}clients_p99_ms": percentile(latencies, 0.99) * 1e3,
            "_ops": len(latencies)}


def _echo_checked_clients(port: int, clients: int, duration: float, ready, go,
                          out: mp.Queue) -> None:
    """Closed-loop clients that check every echo: each carries the client's
    sequence number, so a lost, duplicated or reordered message is counted,
    and so is every connection the server closes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(clients):
        socks.append(ws_open(port, "/echo/"))
    ready.wait()
    go.wait()
    state = {}
    latencies: list[float] = []
    wrong = closed = 0
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = [1, time.perf_counter(), bytearray()]
        sock.send(frame(b"%010d" % 1 + PAYLOAD[:90]))
    end = time.monotonic() + duration
    while time.monotonic() < end and state:
        for key, _ in sel.select(0.5):
            sock = key.fileobj
            entry = state[sock]
            try:
                data = sock.recv(65536)
            except ConnectionError:
                data = b""
            entry[2] += data
            frames = _frames(entry[2])
            if not data or any(opcode == 8 for opcode, _ in frames):  # EOF or close frame
                closed += 1
                sel.unregister(sock)
                del state[sock]
                continue
            for opcode, payload in frames:
                if opcode == 9:  # the server's keep-alive ping: answer, not an echo
                    sock.send(frame(payload, opcode=10))
                    continue
                if payload[:10] != b"%010d" % entry[0]:
                    wrong += 1
                now = time.perf_counter()
                latencies.append(now - entry[1])
                entry[0] += 1
                entry[1] = now
                sock.send(frame(b"%010d" % entry[0] + PAYLOAD[:90]))
    out.put((latencies, wrong, closed))
    for sock in socks:
        sock.close()


def _frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove complete server frames from ``buf``: ``[(opcode, payload)]``."""
    found = []
    while len(buf) >= 2:
        n, start = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, start = struct.unpack_from("!H", buf, 2)[0], 4
        if len(buf) < start + n:
            break
        found.append((buf[0] & 0x0F, bytes(buf[start:start + n])))
        del buf[:start + n]
    return found


def echo_checked(port: int, duration: int, clients: int = 1000, procs: int = 4) -> dict:
    out: mp.Queue = mp.Queue()
    ready = mp.Barrier(procs + 1)
    go = mp.Event()
    workers = [mp.Process(target=_echo_checked_clients,
                          args=(port, clients // procs, duration, ready, go, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    ready.wait(300)
    go.set()
    results = [out.get(timeout=duration + 300) for _ in workers]
    for w in workers:
        w.join()
    latencies = [x for r in results for x in r[0]]
    return {f"echo{clients}_msgs_s": len(latencies) / duration,
            f"echo{clients}_p50_ms": statistics.median(latencies) * 1e3,
            f"echo{clients}_p99_ms": percentile(latencies, 0.99) * 1e3,
            f"echo{clients}_lost_or_reordered": sum(r[1] for r in results),
            f"echo{clients}_connections_closed": sum(r[2] for r in results),
            "_ops": len(latencies)}


def _bcast_clients(port: int, clients: int, expect: int, ready, out: mp.Queue) -> None:
    socks = [ws_open(port, "/bcast/") for _ in range(clients)]
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, [bytearray(), 0])
    ready.wait()
    remaining = clients
    last = 0.0
    deadline = time.monotonic() + 120
    while remaining and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            state = key.data
            state[0] += key.fileobj.recv(65536)
            state[1] += parse_frames(state[0])
            last = time.monotonic()
            if state[1] >= expect:
                sel.unregister(key.fileobj)
                remaining -= 1
    out.put((0, last, remaining))
    for sock in socks:
        sock.close()


def broadcast(port: int, clients: int = 100, messages: int = 200, procs: int = 2) -> dict:
    out: mp.Queue = mp.Queue()
    ready = mp.Barrier(procs + 1)
    workers = [mp.Process(target=_bcast_clients,
                          args=(port, clients // procs, messages, ready, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    sender = ws_open(port, "/bcast-send/")
    ready.wait()
    t0 = time.monotonic()
    for i in range(messages):
        sender.sendall(frame(b"%d " % i + PAYLOAD[:90]))
    results = [out.get(timeout=180) for _ in workers]
    for w in workers:
        w.join()
    sender.close()
    missing = sum(r[2] for r in results)
    elapsed = max(r[1] for r in results) - t0
    return {"broadcast_delivered_s": clients * messages / elapsed,
            "broadcast_clients_incomplete": missing, "_ops": clients * messages}


def _idle_clients(port: int, count: int, out: mp.Queue, hold, batch: int = 100) -> None:
    """Open ``count`` WebSockets, ``batch`` handshakes in flight at a time (a
    client waiting for each handshake in turn would measure its own round
    trips, not how fast the server accepts), then hold them open."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = (b"GET /echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    socks: list[socket.socket] = []
    try:
        _open_batches(port, count, batch, request, socks)
    except Exception as exc:  # noqa: BLE001 - the parent reports it, not waits for ever
        out.put(f"after {len(socks)} opened: {exc!r}")
        return
    out.put(len(socks))
    hold.wait()
    for sock in socks:
        sock.close()


def _open_batches(port: int, count: int, batch: int, request: bytes,
                  socks: list[socket.socket]) -> None:
    sel = selectors.DefaultSelector()
    while len(socks) < count:
        pending = {}
        for _ in range(min(batch, count - len(socks))):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request)
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
            pending[sock] = b""
        deadline = time.monotonic() + 60
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} handshakes unanswered after 60 s")
            for key, _ in sel.select(1):
                sock = key.fileobj
                data = sock.recv(4096)
                if not data:
                    raise RuntimeError("handshake: connection closed")
                pending[sock] += data
                if b"\r\n\r\n" in pending[sock]:
                    if not pending[sock].startswith(b"HTTP/1.1 101"):
                        raise RuntimeError("handshake refused: " + pending[sock][:40].decode())
                    sel.unregister(sock)
                    del pending[sock]
                    socks.append(sock)


def idle(server: ServerProcess, total: int = 5000, procs: int = 2) -> dict:
    warm = ws_open(server.port, "/echo/")
    warm.close()
    time.sleep(0.5)
    before = server.rss_kb()
    out: mp.Queue = mp.Queue()
    hold = mp.Event()
    t0 = time.monotonic()
    workers = [mp.Process(target=_idle_clients, args=(server.port, total // procs, out, hold),
                          daemon=True) for _ in range(procs)]
    try:
        for w in workers:
            w.start()
        results = [out.get(timeout=300) for _ in workers]
        failed = [r for r in results if isinstance(r, str)]
        if failed:
            raise RuntimeError("idle clients failed: " + "; ".join(failed))
        opened = sum(results)
        open_s = time.monotonic() - t0
        time.sleep(1.0)
        after = server.rss_kb()
    finally:
        hold.set()
        for w in workers:
            w.join(10)
            if w.is_alive():
                w.terminate()
    return {"idle_ws": opened, "idle_open_s": open_s, "_ops": opened,
            "idle_rss_before_mb": before / 1024,
            "idle_rss_after_mb": after / 1024, "idle_kb_per_ws": (after - before) / opened}


# ------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="http,http1,echo1,echo100,broadcast,idle")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="embedded worker threads")
    parser.add_argument("--threads", type=int, default=8, help="WSGI threads")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python HTTP client")
    parser.add_argument("--against-waitress", action="store_true",
                        help="also run the HTTP workloads on waitress (same project and "
                        "threads; waitress must be importable, e.g. PYTHONPATH=dir)")
    parser.add_argument("--idle", type=int, default=5000, help="idle WebSockets to open")
    peers = parser.add_argument_group("side by side with peers (bench/server_peers.py)")
    peers.add_argument("--peers", action="store_true",
                       help="run the workloads on chanlite and its peers, interleaved")
    peers.add_argument("--servers", default=None,
                       help="comma-separated columns for --peers (default: chanlite, Daphne + "
                       "Channels 4, uvicorn + Channels 4, waitress, gunicorn gthread; "
                       "'chanlite runserver' too if asked)")
    peers.add_argument("--idle-big", type=int, default=0, metavar="N",
                       help="with --peers: also hold N idle WebSockets on chanlite alone "
                       "(e.g. 19900: the bench raises its open-file limit as far as allowed)")
    peers.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --peers")
    peers.add_argument("--python", default=None,
                       help="interpreter the servers run with (default: this one)")
    peers.add_argument("--before", metavar="DIR",
                       help="with --peers: add a 'chanlite before' column served from another "
                       "checkout (e.g. `git worktree add DIR main`), for before/after ratios")
    peers.add_argument("--record", metavar="PATH",
                       help="with --peers: write the table JSON (bench/report.py renders it)")
    args = parser.parse_args()
    if args.peers:
        import server_peers

        if args.servers is None:
            args.servers = ",".join(server_peers.DEFAULT_PEERS)
        server_peers.run_peers(args)
        return
    if args.record:
        parser.error("--record needs --peers")
    only = set(args.only.split(","))
    results: dict = {}
    plan = [
        ("http", lambda s: http_wrk(s.port, args.duration)
         if shutil.which("wrk") and not args.no_wrk else http_python(s.port, args.duration)),
        ("http1", lambda s: http_one_conn(s.port)),
        ("echo1", lambda s: echo_one(s.port)),
        ("echo100", lambda s: echo_many(s.port, args.duration)),
        ("echo1000", lambda s: echo_checked(s.port, args.duration)),
        ("broadcast", lambda s: broadcast(s.port)),
        ("idle", lambda s: idle(s, total=args.idle)),
    ]
    runs = [(name, run, False) for name, run in plan]
    if args.against_waitress:
        runs += [(name, run, True) for name, run in plan if name in ("http", "http1")]
    for name, run, waitress in runs:
        if name not in only:
            continue
        server = ServerProcess(args.workers, args.threads, waitress=waitress,
                               defaults=name == "echo1000")
        if waitress:
            name = "waitress_" + name
        try:
            cpu = server.cpu_seconds()
            figures = run(server)
            ops = figures.pop("_ops", None)
            if ops:
                figures[f"{name}_server_cpu_us_per_op"] = (server.cpu_seconds() - cpu) / ops * 1e6
        finally:
            server.stop()
        if waitress:
            figures = {k if k.startswith("waitress_") else "waitress_" + k: v
                       for k, v in figures.items()}
        results.update(figures)
        for key, value in figures.items():
            text = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"{key:32} {text}", flush=True)


if __name__ == "__main__":
    main()
