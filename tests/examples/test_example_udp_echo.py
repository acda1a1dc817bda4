"""examples/udp_echo: datagrams reach a consumer through a channel and come back.

Proves the example's claim that a new protocol is just an interface server:
the consumer only sees ``udp.receive`` messages and answers on the reply
channel; each client gets its own replies, over real UDP on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import Router
from chanlite.worker import WorkerPool

PATH = Path(__file__).resolve().parents[2] / "examples" / "udp_echo" / "udp_echo.py"
WAIT = 5.0


def _load():
    spec = importlib.util.spec_from_file_location("udp_echo_example", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


udp_echo = _load()


@pytest.fixture
def echo_server():
    layer = InMemoryChannelLayer()
    workers = WorkerPool(layer, Router(udp_echo.channel_routing), threads=2)
    server = udp_echo.UDPInterfaceServer(layer, "127.0.0.1", 0)
    workers.start()
    server.start()
    yield server, layer
    assert server.stop(WAIT), "the UDP server threads did not stop"
    assert workers.stop(WAIT), "the worker threads did not stop"


def client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(WAIT)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_datagram_is_echoed(echo_server):
    server, _ = echo_server
    with client() as sock:
        sock.sendto(b"hello over a channel", server.address)
        data, source = sock.recvfrom(65535)
    assert data == b"hello over a channel"
    assert source[:2] == server.address


def test_each_client_gets_its_own_replies(echo_server):
    server, _ = echo_server
    with client() as a, client() as b:
        for i in range(5):
            a.sendto(b"a%d" % i, server.address)
            b.sendto(b"b%d" % i, server.address)
        got_a = {a.recvfrom(65535)[0] for _ in range(5)}
        got_b = {b.recvfrom(65535)[0] for _ in range(5)}
    assert got_a == {b"a%d" % i for i in range(5)}
    assert got_b == {b"b%d" % i for i in range(5)}


def test_what_crosses_the_layer_is_an_ordinary_message():
    """No workers: the test plays the consumer, reading ``udp.receive`` itself,
    so it sees exactly the message a consumer gets and answers by hand."""
    layer = InMemoryChannelLayer()
    server = udp_echo.UDPInterfaceServer(layer, "127.0.0.1", 0)
    server.start()
    try:
        with client() as sock:
            sock.sendto(b"inspect me", server.address)
            channel, content = layer.receive(["udp.receive"], block=True, timeout=WAIT)
            assert channel == "udp.receive", f"no udp.receive message within {WAIT}s"
            assert content["data"] == b"inspect me"
            assert content["reply_channel"].startswith(server.prefix)
            assert content["client"] == ["127.0.0.1", sock.getsockname()[1]]
            layer.send(content["reply_channel"], {"data": b"answered by hand"})
            assert sock.recvfrom(65535)[0] == b"answered by hand"
    finally:
        assert server.stop(WAIT), "the UDP server threads did not stop"
