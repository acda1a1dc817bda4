"""Issue 13 item 4: request bodies cannot exhaust memory or hold a connection
for ever. Twenty 10 MiB uploads used to cost 200 MiB of RAM; a body trickled
at one byte every few seconds stayed open indefinitely."""

from __future__ import annotations

import time

import pytest

from chanlite.testing import eventually

from . import rawclient as raw
from .server_app import channel_routing


@pytest.fixture
def start(chanlite_server, settings):
    settings.ROOT_URLCONF = "tests.security.server_app"
    return lambda **config: chanlite_server(routing=channel_routing, **config)


def post_head(path: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def test_a_large_body_reaches_the_view_from_a_file(start):
    server = start()
    big = raw.request(server, post_head("/upload/", 1 << 20) + b"x" * (1 << 20))
    assert raw.status_of(big) == 200
    size, kind = raw.body_of(big).split()
    assert size == b"1048576"
    assert kind != b"BytesIO", "a 1 MiB body was held in memory, not spooled to a file"
    small = raw.request(server, post_head("/upload/", 10_000) + b"x" * 10_000)
    assert raw.body_of(small) == b"10000 BytesIO"  # small bodies stay in memory
    # Given back once the pool thread is done with the view (just after it
    # hands the response to the I/O loop, so allow it a moment).
    eventually(lambda: server.body_memory.used == 0,
               lambda: f"the body memory to be given back ({server.body_memory.used} B held)",
               timeout=raw.WAIT)


def test_body_memory_is_bounded_across_connections(start):
    server = start(max_body_memory=200_000, body_spool_threshold=150_000)
    holders = []
    try:
        for _ in range(4):  # four incomplete 120 kB bodies: 480 kB sent, in all
            sock = raw.connect(server)
            sock.sendall(post_head("/upload/", 130_000) + b"x" * 120_000)
            holders.append(sock)
        # Once the server has read all of it, at most max_body_memory is in memory.
        eventually(lambda: sum(
                c.session.core.body_received for c in list(server.connections)) >= 480_000,
                   "the server to read all 480 kB", timeout=raw.WAIT)
        assert server.body_memory.used <= 200_000
        # The budget is used up, so even a small body now goes to a file.
        response = raw.request(server, post_head("/upload/", 90_000) + b"y" * 90_000)
        assert raw.body_of(response).split()[1] != b"BytesIO"
    finally:
        for sock in holders:
            sock.close()
    eventually(lambda: server.body_memory.used == 0,
               lambda: f"closed connections to give their memory back "
                       f"({server.body_memory.used} B held)", timeout=raw.WAIT)


@pytest.mark.parametrize("path", ["/upload/", "/chan/echo/"])  # a view, a consumer
def test_a_stalled_body_gets_408(start, path):
    server = start(body_idle_timeout=0.3)
    with raw.connect(server) as sock:
        sock.sendall(post_head(path, 100) + b"x")
        started = time.monotonic()
        response = raw.read_until_closed(sock)
    assert raw.status_of(response) == 408
    assert time.monotonic() - started < 3


def test_a_trickled_body_gets_408_at_the_total_timeout(start):
    server = start(body_idle_timeout=5, body_timeout=0.6)
    with raw.connect(server) as sock:
        sock.sendall(post_head("/upload/", 100))
        started = time.monotonic()
        response = b""
        for _ in range(60):  # one byte every 0.05 s: never idle for long
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.05)
            try:
                response += sock.recv(4096)
            except TimeoutError:
                continue
            if response:
                break
        response += raw.read_until_closed(sock)
    assert raw.status_of(response) == 408, response
    assert 0.5 < time.monotonic() - started < 3
