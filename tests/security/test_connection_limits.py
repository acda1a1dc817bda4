"""Issue 13 item 5: a cap on connections, and on WSGI requests waiting for a
thread. Beyond max_connections the server stops accepting (the kernel's
backlog holds the rest) instead of meeting EMFILE in a loop; beyond
max_queued_requests new requests get 503 with Retry-After."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from . import rawclient as raw
from . import server_app
from .server_app import channel_routing

HELLO = b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_beyond_max_connections_the_server_stops_accepting(chanlite_server, caplog):
    caplog.set_level(logging.WARNING, logger="chanlite.server")
    server = chanlite_server(max_connections=3)
    held = [raw.connect(server) for _ in range(3)]
    try:
        for sock in held:  # all three really are being served
            sock.sendall(HELLO)
            assert raw.status_of(raw.read_response(sock)) == 200
        extra = [raw.connect(server) for _ in range(3)]  # the backlog takes them
        for sock in extra:
            sock.sendall(HELLO)
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # not accepted, so not answered
        assert len(server.connections) == 3
        held.pop().close()  # one leaves: the next waiting one is served
        extra[0].settimeout(raw.WAIT)
        assert raw.status_of(raw.read_response(extra[0])) == 200
        held.extend(extra)
    finally:
        for sock in held:
            sock.close()
    limit_lines = [r for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(limit_lines) == 1, [r.getMessage() for r in limit_lines]  # once, not per try


def test_default_connection_limit_leaves_room_under_the_fd_limit():
    code = textwrap.dedent("""
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        from chanlite.server.config import ServerConfig
        print(ServerConfig().connection_limit(), ServerConfig(max_connections=7).connection_limit())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["192", "7"]


def test_wsgi_queue_is_bounded_with_503_and_retry_after(chanlite_server, settings):
    settings.ROOT_URLCONF = "tests.security.server_app"
    server_app.SLOW_RELEASE.clear()
    server_app.SLOW_STARTED.clear()
    server = chanlite_server(routing=channel_routing, threads=1, max_queued_requests=1)
    slow = b"GET /slow/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    running, queued = raw.connect(server), raw.connect(server)
    try:
        running.sendall(slow)
        assert server_app.SLOW_STARTED.wait(raw.WAIT), "the first view never started"
        queued.sendall(slow)  # waits for the only thread
        response = raw.request(server, slow)  # one too many
        assert raw.status_of(response) == 503
        assert b"\r\nretry-after: 1\r\n" in response.lower()
        server_app.SLOW_RELEASE.set()
        assert raw.status_of(raw.read_response(running)) == 200
        assert raw.status_of(raw.read_response(queued)) == 200
    finally:
        server_app.SLOW_RELEASE.set()
        running.close()
        queued.close()


SERVE_WITH_FEW_FDS = textwrap.dedent("""
    import os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.core.wsgi import get_wsgi_application
    from chanlite.layers.memory import InMemoryChannelLayer
    from chanlite.server.config import ServerConfig
    from chanlite.server.server import Server
    server = Server(InMemoryChannelLayer(), ServerConfig(port=0), router=None,
                    wsgi_app=get_wsgi_application())
    host, port = server.bind()[:2]
    print(port, getattr(server, "max_connections", 0), flush=True)
    server.install_signal_handlers()
    server.serve_forever()
""")


def test_more_clients_than_file_descriptors_never_meets_emfile():
    """A server whose open-file limit is 128 faces 150 clients at once: its
    default max_connections keeps it below the limit, so accept() never fails
    with "Too many open files"; every client is served once others leave."""
    import os
    import signal
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", SERVE_WITH_FEW_FDS], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients = []
    try:
        port, limit = map(int, proc.stdout.readline().split())

        class Addr:
            address = ("127.0.0.1", port)

        for _ in range(150):
            sock = raw.connect(Addr)
            sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            clients.append(sock)
        for sock in clients:  # each is answered (Connection: close frees its slot)
            response = raw.read_until_closed(sock, timeout=20)
            assert raw.status_of(response) == 200
    finally:
        for sock in clients:
            sock.close()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert "Too many open files" not in stderr, stderr[-2000:]
    assert proc.returncode == 0, stderr[-2000:]
    assert limit == 64  # 128 - 64 for the layer, logs, spooled bodies...
