"""A live chanlite server on 127.0.0.1 for tests, plus tiny HTTP/WebSocket helpers.

Import the ``chanlite_server`` fixture into a test module. Servers listen on an
ephemeral port, run embedded workers by default, and are shut down (and
checked to have stopped) at the end of each test.
"""

from __future__ import annotations

import http.client
import socket
import struct
import time

import pytest
import websocket

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import Router
from chanlite.server.config import ServerConfig
from chanlite.server.server import Server

from .server_consumers import channel_routing

WAIT = 5.0  # every blocking wait in these tests is bounded by this


def _starter(servers: list, make_layer, default_workers: int):
    def start(workers: int | None = None, routing=channel_routing, layer=None, wsgi_app=None,
              **config) -> Server:
        from django.core.wsgi import get_wsgi_application

        if workers is None:
            workers = default_workers
        layer = layer if layer is not None else make_layer()
        config.setdefault("threads", 4)
        cfg = ServerConfig(host="127.0.0.1", port=0, **config)
        server = Server(layer, cfg, wsgi_app=wsgi_app or get_wsgi_application(),
                        router=Router(routing), workers=workers)
        server.start()
        servers.append(server)
        return server

    return start


@pytest.fixture
def chanlite_server():
    """``start(**options) -> Server`` on the in-memory layer with embedded workers;
    every server started is stopped after the test."""
    servers: list[Server] = []
    yield _starter(servers, InMemoryChannelLayer, 2)
    for server in servers:
        assert server.shutdown(10), "server did not stop within 10s"


IPC_MEMORY = {"memory": 8 << 20, "max_channels": 1024, "max_groups": 128}


@pytest.fixture(scope="module")
def ipc_runworker():
    """A ``manage.py runworker`` process on a fresh IPC prefix, for a whole module.

    Yields the prefix. At the end the worker gets SIGTERM (it must exit 0) and
    the prefix is removed from /dev/shm.
    """
    import os
    import secrets
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from chanlite.layers.ipc import IPCChannelLayer

    prefix = "srv" + secrets.token_hex(4)
    env = dict(os.environ, CHANLITE_TEST_IPC_PREFIX=prefix,
               DJANGO_SETTINGS_MODULE="tests.server.server_ipc_settings")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "django", "runworker", "--workers", "2"],
                            cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        yield prefix
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            code = "killed"
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        IPCChannelLayer.remove_prefix(prefix)
        assert code == 0, f"runworker exited {code}:\n{output}"


@pytest.fixture(params=["memory", "ipc"])
def layered_server(request):
    """Like ``chanlite_server``, once on the in-memory layer with embedded workers
    and once on the IPC layer with consumers in a separate runworker process."""
    servers: list[Server] = []
    layers: list = []
    if request.param == "memory":
        start = _starter(servers, InMemoryChannelLayer, 2)
    else:
        from chanlite.layers.ipc import IPCChannelLayer

        prefix = request.getfixturevalue("ipc_runworker")

        def make_layer():
            layer = IPCChannelLayer(prefix=prefix, **IPC_MEMORY)
            layers.append(layer)
            return layer

        make_layer().flush()  # nothing left over from the previous test
        start = _starter(servers, make_layer, 0)
    yield start
    for server in servers:
        assert server.shutdown(10), "server did not stop within 10s"
    for layer in layers:
        layer.close()


def ws_connect(server: Server, path: str, **options) -> websocket.WebSocket:
    host, port = server.address[:2]
    return websocket.create_connection(f"ws://{host}:{port}{path}", timeout=WAIT, **options)


def recv_close_code(ws: websocket.WebSocket, timeout: float = WAIT) -> int:
    """Read frames until a close frame; return its code. Fails clearly if none
    comes within ``timeout`` s (each read is also bounded by the socket timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no close frame within {timeout}s"
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005


def http_request(server: Server, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None, timeout: float = WAIT) -> tuple[int, dict, bytes]:
    host, port = server.address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def raw_socket(server: Server) -> socket.socket:
    sock = socket.create_connection(server.address[:2], timeout=WAIT)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes; fails clearly if it has not
    closed within ``timeout`` s (even if it keeps trickling bytes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"server did not close the connection within {timeout}s: {data[-200:]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"server did not close the connection within {timeout}s: {data[-200:]!r}"
            ) from None
        if not chunk:
            return data
        data += chunk


def layer_wait(layer, channel: str) -> dict:
    got, message = layer.receive([channel], block=True, timeout=WAIT)
    assert got is not None, f"nothing arrived on {channel!r} within {WAIT}s"
    return message
