"""`chanlite serve` and `manage.py runserver` as real processes, stopped with signals."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import websocket

from .server_fixtures import WAIT

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A server subprocess whose stderr lines are collected by a thread."""

    def __init__(self, args: list[str], env_settings: str = "tests.server.server_settings") -> None:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=env_settings, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = (
            time.monotonic() + timeout
        )  # overall, not per line: chatty output cannot extend it
        try:
            while True:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
                match = regex.search(line)
                if match:
                    return match
        except queue.Empty:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout}s; output:\n" + "".join(self.output)
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("server did not exit within 20s of the signal:\n"
                                 + "".join(self.output)) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", path)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


@pytest.fixture
def processes():
    started: list[Process] = []
    yield lambda *a, **k: started.append(Process(*a, **k)) or started[-1]
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(5)


def test_chanlite_serve_http_websocket_and_sigterm(processes):
    proc = processes(["-m", "chanlite.server", "serve", "tests.server.server_asgi:channel_layer",
                      "--port", "0", "--access-log"])
    port = int(proc.wait_for(r" at http://127\.0\.0\.1:(\d+)/").group(1))
    assert get(port, "/hello/") == (200, b"Hello, world")
    proc.wait_for(r'"GET /hello/ HTTP/1.1" 200 12')
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo/", timeout=WAIT)
    ws.send("ping")
    assert ws.recv() == "ping"
    proc.proc.send_signal(signal.SIGTERM)
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and data[:2] == (1001).to_bytes(2, "big")
    ws.close()
    assert proc.stop() == 0


def test_chanlite_serve_console_script_help():
    out = subprocess.run([sys.executable, "-m", "chanlite.server", "serve", "--help"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ["--bind", "--port", "--unix-socket", "--http-threads", "--workers", "--access-log",
                 "--max-request-body", "--http-response-timeout"]:
        assert flag in out.stdout


def test_every_limit_and_timeout_is_a_serve_flag():
    """docs/server.md promises each limit and timeout of ServerConfig as a flag."""
    from chanlite.server import config
    from chanlite.server.__main__ import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    flags = {opt for action in serve._actions for opt in action.option_strings}
    missing = [name for name in (*config._SECONDS, *config._SIZES, "threads")
               if "--" + name.replace("_", "-") not in flags]
    assert not missing, f"ServerConfig fields without a chanlite serve flag: {missing}"


def test_chanlite_serve_rejects_a_non_layer():
    out = subprocess.run([sys.executable, "-m", "chanlite.server", "serve", "os:path"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ,
                                  DJANGO_SETTINGS_MODULE="tests.server.server_settings"))
    assert out.returncode != 0 and "not a channel layer" in out.stderr


def test_runserver_serves_views_and_websockets(processes):
    port = free_port()
    proc = processes(["-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload",
                      "--skip-checks"])
    proc.wait_for(rf"Starting development server at http://127\.0\.0\.1:{port}/")
    assert get(port, "/hello/") == (200, b"Hello, world")
    proc.wait_for(r'\] "GET /hello/ HTTP/1.1" 200 12')  # Django's access-log format
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/echo/", timeout=WAIT)
    ws.send("from runserver")
    assert ws.recv() == "from runserver"
    ws.close()
    assert proc.stop(signal.SIGINT) == 0


def _delayed_round_trip(port: int) -> str:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/delayed/", timeout=WAIT)
    try:
        ws.send("hi")
        assert ws.recv() == "scheduled"
        return ws.recv()
    finally:
        ws.close()


def _nothing_takes_delay_requests(port: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/delayed/", timeout=WAIT)
    ws.send("hi")
    assert ws.recv() == "scheduled"  # sent after the request: the request is in the layer
    ws.send("pending")
    assert ws.recv() == "pending 1", "with --nodelay nothing may take asgi.delay requests"
    ws.close()


def test_runserver_runs_the_delay_service_and_nodelay_turns_it_off(processes):
    for flags in ([], ["--nodelay"]):
        port = free_port()
        proc = processes(["-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload",
                          "--skip-checks", *flags])
        proc.wait_for(rf"Starting development server at http://127\.0\.0\.1:{port}/")
        if flags:
            _nothing_takes_delay_requests(port)
        else:
            assert _delayed_round_trip(port) == "later: hi"
        assert proc.stop(signal.SIGINT) == 0


def test_chanlite_serve_runs_the_delay_service_and_nodelay_turns_it_off(processes):
    proc = processes(["-m", "chanlite.server", "serve", "tests.server.server_asgi:channel_layer",
                      "--port", "0"])
    port = int(proc.wait_for(r" at http://127\.0\.0\.1:(\d+)/").group(1))
    assert _delayed_round_trip(port) == "later: hi"
    assert proc.stop() == 0

    proc = processes(["-m", "chanlite.server", "serve", "tests.server.server_asgi:channel_layer",
                      "--port", "0", "--nodelay"])
    port = int(proc.wait_for(r" at http://127\.0\.0\.1:(\d+)/").group(1))
    _nothing_takes_delay_requests(port)
    assert proc.stop() == 0
