"""Views in workers, end to end: HTTP requests through the real server, routed by
a catch-all ``route("http.request", "chanlite.handler.ViewConsumer")`` and
answered by Django views in a ``manage.py runworker`` process on the IPC layer.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chanlite.layers.ipc import IPCChannelLayer
from chanlite.routing import Router
from chanlite.server.config import ServerConfig
from chanlite.server.server import Server

from ..server.server_fixtures import http_request as _http_request

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # bounds every wait, including the worker's Django start-up


def http_request(srv: Server, method: str, path: str, **options) -> tuple[int, dict, bytes]:
    return _http_request(srv, method, path, timeout=WAIT, **options)


@pytest.fixture(scope="module")
def view_worker():
    """(prefix, pid) of a runworker process running ViewConsumer on a fresh IPC prefix."""
    prefix = "hv" + secrets.token_hex(4)
    env = dict(os.environ, CHANLITE_TEST_IPC_PREFIX=prefix,
               DJANGO_SETTINGS_MODULE="tests.compat.handler_ipc_settings", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "django", "runworker", "--workers", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield prefix, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            code = "killed"
        output = proc.stdout.read().decode(errors="replace")
        IPCChannelLayer.remove_prefix(prefix)
        assert code == 0, f"runworker exited {code}:\n{output}"


@pytest.fixture
def server(view_worker):
    """The real server on the worker's IPC layer, with no embedded workers and a
    small ``body_chunk_size`` so request bodies travel on ``body_channel``."""
    from django.core.wsgi import get_wsgi_application

    from tests.compat.handler_routing import channel_routing

    layer = IPCChannelLayer(prefix=view_worker[0], memory=8 << 20, max_channels=256,
                            max_groups=16, max_message_size=64 * 1024)
    config = ServerConfig(host="127.0.0.1", port=0, threads=2, body_chunk_size=4096,
                          http_response_timeout=WAIT)
    srv = Server(layer, config, wsgi_app=get_wsgi_application(), router=Router(channel_routing),
                 workers=0)
    srv.start()
    yield srv
    assert srv.shutdown(10), "server did not stop within 10s"
    layer.close()


def test_view_runs_in_the_runworker_process(server, view_worker):
    status, headers, body = http_request(server, "GET", "/echo/?q=worker",
                                    headers={"User-Agent": "e2e", "Cookie": "k=v"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["pid"] == view_worker[1] != os.getpid()
    assert seen["get"] == {"q": "worker"}
    assert seen["cookies"] == {"k": "v"}
    assert seen["user_agent"] == "e2e"
    assert seen["remote_addr"] == "127.0.0.1"
    assert headers["content-type"] == "application/json"


def test_large_upload_arrives_through_the_body_channel(server):
    payload = b"a=" + b"x" * 20_000  # five body_chunk_size pieces
    status, _, body = http_request(server, "POST", "/echo/", body=payload,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["method"] == "POST"
    assert seen["post"] == {"a": "x" * 20_000}


def test_streamed_and_large_responses(server):
    status, _, body = http_request(server, "GET", "/stream/?n=200")
    assert status == 200
    assert body == b"".join(f"line {i}\n".encode() for i in range(200))
    # 150 kB from a layer whose messages hold 64 kB: several chunks, reassembled.
    status, headers, body = http_request(server, "GET", "/big/?size=150000")
    assert status == 200
    assert body == b"x" * 150_000
    assert headers["content-length"] == "150000"


def test_errors_and_cookies_from_worker_views(server):
    assert http_request(server, "GET", "/nowhere/")[0] == 404
    assert http_request(server, "GET", "/broken/")[0] == 500
    status, headers, body = http_request(server, "GET", "/cookie/")
    assert (status, body) == (200, b"cookie set")
    assert headers["set-cookie"].startswith("flavour=oat;")
