"""Back-pressure from the channel layer to the socket (docs/server.md, "Back-pressure").

A full protocol channel must slow a connection down, not drop it: the
server keeps the message, stops reading the socket (TCP pushes back on the
client) and sends when the layer has room - woken by the layer on the
in-memory layer, by a bounded backoff on cross-process layers. Only a channel
that stays full for ``backpressure_timeout`` closes (1013 / 503, covered in
test_server_protocol_edges.py).
"""

from __future__ import annotations

import base64
import os
import selectors
import socket
import struct
import threading
import time

import pytest

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import route
from chanlite.server.ws_session import _PARSE_BATCH
from chanlite.testing import eventually

from .server_consumers import ws_accept, ws_echo
from .server_fixtures import (
    WAIT,
    layer_wait,
)

# ------------------------------------------------------------ raw clients


def accepted_by_hand(server, layer, path: str):
    """Open a WebSocket whose ``websocket.connect`` the test itself accepts
    (no workers), so it controls exactly what sits in each channel."""
    from .server_fixtures import ws_connect

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ws", ws_connect(server, path)))
    thread.start()
    reply_channel = layer_wait(layer, "websocket.connect")["reply_channel"]
    layer.send(reply_channel, {"accept": True})
    thread.join(WAIT)
    assert "ws" in result, f"the handshake for {path} did not complete within {WAIT}s"
    return result["ws"]


def ws_handshake(sock: socket.socket, path: str) -> None:
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                 b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame with a zero key (valid, and no XOR work)."""
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else \
        struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + b"\0\0\0\0" + payload


def server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove complete (unmasked, small) server frames from ``buf``."""
    frames = []
    while len(buf) >= 2:
        n, start = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, start = struct.unpack_from("!H", buf, 2)[0], 4
        if len(buf) < start + n:
            break
        frames.append((buf[0] & 0x0F, bytes(buf[start:start + n])))
        del buf[:start + n]
    return frames


def open_clients(port: int, path: str, count: int, deadline: float) -> list[socket.socket]:
    """``count`` WebSockets opened concurrently (all handshakes in flight at
    once, as a crowd of browsers would)."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws_handshake(sock, path)
        socks.append(sock)
    sel = selectors.DefaultSelector()
    heads = {}
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        heads[sock] = b""
    waiting = set(socks)
    while waiting:
        assert time.monotonic() < deadline, f"{len(waiting)} of {count} handshakes unanswered"
        for key, _ in sel.select(0.5):
            sock = key.fileobj
            data = sock.recv(4096)
            assert data, "the server closed a connection during its handshake"
            heads[sock] += data
            if b"\r\n\r\n" in heads[sock]:
                assert heads[sock].startswith(b"HTTP/1.1 101"), heads[sock][:60]
                assert heads[sock].endswith(b"\r\n\r\n"), "no frame was expected yet"
                sel.unregister(sock)
                waiting.discard(sock)
    sel.close()
    return socks


# ------------------------------------------------------------------ tests

echo_routing = [
    route("websocket.connect", ws_accept, path=r"^/echo/$"),
    route("websocket.receive", ws_echo, path=r"^/echo/$"),
]


def test_300_clients_on_capacity_20_lose_nothing_and_keep_order(chanlite_server):
    """Issue 21's proof at CI scale: 300 clients, 3 messages in flight each
    (900 at once) on channels holding 20. Every connection stays open and
    every client gets every echo, in order - back-pressure, not disconnects."""
    clients, window, rounds = 300, 3, 12
    layer = InMemoryChannelLayer(channel_capacity={"websocket.*": 20})
    # One worker: consumers then run in channel order, so an echo out of order
    # could only come from the server (two workers may legitimately overtake).
    server = chanlite_server(workers=1, layer=layer, routing=echo_routing)
    deadline = time.monotonic() + 120
    socks = open_clients(server.address[1], "/echo/", clients, deadline)
    sel = selectors.DefaultSelector()
    state = {}
    for index, sock in enumerate(socks):
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = {"id": index, "sent": 0, "got": 0, "buf": bytearray()}

    def send_next(sock):
        s = state[sock]
        s["sent"] += 1
        sock.setblocking(True)
        sock.sendall(client_frame(b"%d:%d" % (s["id"], s["sent"])))
        sock.setblocking(False)

    for sock in socks:
        for _ in range(window):
            send_next(sock)
    done = 0
    while done < clients:
        assert time.monotonic() < deadline, (
            f"only {done} of {clients} clients got all {rounds} echoes in time")
        for key, _ in sel.select(0.5):
            sock, s = key.fileobj, state[key.fileobj]
            data = sock.recv(65536)
            assert data, f"client {s['id']}: the server closed the connection"
            s["buf"] += data
            for opcode, payload in server_frames(s["buf"]):
                assert opcode == 1, f"client {s['id']}: frame {opcode} {payload[:40]!r}"
                s["got"] += 1
                assert payload == b"%d:%d" % (s["id"], s["got"]), (
                    f"client {s['id']}: echo {payload!r} out of order or lost "
                    f"(expected message {s['got']})")
                if s["sent"] < rounds:
                    send_next(sock)
                elif s["got"] == rounds:
                    done += 1
    full = layer.channel_statistics("websocket.receive")["channel_full_count"]
    full += layer.channel_statistics("websocket.connect")["channel_full_count"]
    assert full > 0, "the test never filled a channel: it proves nothing about back-pressure"
    assert server.sender.closed_count.total == 0
    assert len(server.connections) == clients, "the server closed connections"
    # The reply pump drains replies as they come: this server's reply queue
    # (shared by every connection) was never full.
    assert layer.channel_statistics(server.prefix)["channel_full_count"] == 0
    for sock in socks:
        sock.close()
    sel.close()


flood_seen: list[bytes] = []
flood_gate = threading.Event()


def slow_receive(message, **kwargs):
    flood_gate.wait(WAIT * 4)  # consumers stalled until the test opens the gate
    flood_seen.append(message["bytes"][:6])


flood_routing = [
    route("websocket.connect", ws_accept, path=r"^/flood/$"),
    route("websocket.receive", slow_receive, path=r"^/flood/$"),
]


def test_a_flooding_client_is_paused_with_bounded_server_memory(chanlite_server):
    """A client sending far faster than consumers run: the server parses no
    more than the full channel can refuse, holds only what it has read, stops
    reading the socket (the client's send blocks: TCP back-pressure) and, once
    the consumer catches up, delivers every message in order."""
    flood_seen.clear()
    flood_gate.clear()
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 20})
    server = chanlite_server(workers=1, layer=layer, routing=flood_routing,
                             backpressure_timeout=60)
    sock = open_clients(server.address[1], "/flood/", 1, time.monotonic() + WAIT)[0]
    # 24 MB: far more than loopback's socket buffers (a few MB each way) hold.
    total, pad = 12_000, b"." * 1994
    data = b"".join(client_frame(b"%06d" % i + pad, opcode=2) for i in range(total))
    progress = {"sent": 0}

    def flood():
        sock.setblocking(True)
        view = memoryview(data)
        while progress["sent"] < len(data):
            progress["sent"] += sock.send(view[progress["sent"]:progress["sent"] + 4096])

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    [conn] = server.connections

    def stalled():
        before = progress["sent"]
        time.sleep(0.3)  # the client made no progress for a while: TCP pushes back
        return not conn.reading and progress["sent"] == before < len(data)

    eventually(stalled, lambda: (
        f"the server to pause the flood ({progress['sent']} of {len(data)} bytes "
        f"sent, reading={conn.reading})"), timeout=WAIT * 2)
    session = conn.session
    # What the server holds for this connection is bounded by what it read,
    # not by what the client sent: a batch of parsed messages at most, and
    # unparsed bytes from the last reads.
    assert len(session.outbox.items) <= _PARSE_BATCH
    assert len(session.ws._buf) <= 2 * 65536
    assert layer.channel_statistics("websocket.receive")["messages_pending"] == 20
    assert progress["sent"] < len(data) * 0.9, "the client was not slowed down"
    flood_gate.set()
    flooder.join(WAIT * 4)
    assert not flooder.is_alive(), "the flood never finished after consumers caught up"
    eventually(lambda: len(flood_seen) >= total,
               lambda: f"every message to arrive ({len(flood_seen)} of {total} did)",
               timeout=WAIT * 4, interval=0.02)
    assert flood_seen == [b"%06d" % i for i in range(total)], "lost or reordered"
    assert conn in server.connections and not conn.closed
    sock.close()


def test_in_memory_layer_wakes_a_paused_connection_without_polling(chanlite_server):
    """On the in-memory layer the server retries only when the layer says a
    message was taken: a paused connection costs no retries while it waits."""
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    server = chanlite_server(workers=0, layer=layer)
    _paused_connection_resumes(server, layer, max_retries=3)


@pytest.mark.parametrize("kind", ["ipc", "redis"])
def test_cross_process_layers_retry_a_paused_connection_with_a_bounded_backoff(
        chanlite_server, kind):
    """Cross-process layers cannot signal another process's receive: the
    server retries with a backoff (1 ms doubling to 50 ms) - one failed send
    per full channel per retry, about 25 a second while it stays full."""
    import secrets

    if kind == "ipc":
        from chanlite.layers.ipc import IPCChannelLayer

        from .server_fixtures import IPC_MEMORY

        prefix = "bp" + secrets.token_hex(4)
        layer = IPCChannelLayer(prefix=prefix, channel_capacity={"websocket.receive": 1},
                                **IPC_MEMORY)

        def cleanup():
            layer.close()
            IPCChannelLayer.remove_prefix(prefix)
    else:
        from property_tests.layers import LAYERS

        reason = LAYERS["redis"].unavailable()
        if reason:
            print(f"skipping: {reason}")
            pytest.skip(reason)
        from chanlite.layers.redis import RedisChannelLayer

        layer = RedisChannelLayer(hosts=["redis://127.0.0.1:6379/0"],
                                  prefix="chanlite-bp-" + secrets.token_hex(6),
                                  channel_capacity={"websocket.receive": 1})

        def cleanup():
            layer.flush()
            layer.close()
    assert not layer.space_signal_complete
    server = None
    try:
        server = chanlite_server(workers=0, layer=layer)
        _paused_connection_resumes(server, layer, max_retries=40)
    finally:
        if server is not None:  # before the layer is closed under its threads
            assert server.shutdown(10)
        cleanup()


def _paused_connection_resumes(server, layer, max_retries: int) -> None:

    ws = accepted_by_hand(server, layer, "/echo/")
    layer.send("websocket.receive", {"filler": True})  # full
    ws.send("first")
    ws.send("second")
    eventually(lambda: server.sender.waiting, "the connection to wait for room", timeout=WAIT)
    before = server.sender.retries
    time.sleep(1.0)  # measuring: how many retries does one second of waiting cost?
    retries = server.sender.retries - before
    assert retries <= max_retries, f"{retries} retries in 1s while the channel stayed full"
    assert layer_wait(layer, "websocket.receive") == {"filler": True}
    first = layer_wait(layer, "websocket.receive")
    second = layer_wait(layer, "websocket.receive")
    assert (first["text"], first["order"]) == ("first", 1)
    assert (second["text"], second["order"]) == ("second", 2)
    ws.close()
    assert layer_wait(layer, "websocket.disconnect")["order"] == 3


@pytest.mark.parametrize("kind", ["text", "bytes"])
def test_a_message_of_the_derived_limit_is_delivered_one_byte_more_is_1009(
        chanlite_server, kind):
    """Issue 13 item 7: by default ``websocket_max_message_size`` is what the
    layer's ``max_message_size`` leaves after the envelope, so a message the
    server accepts always fits the layer (before, 1,048,560 bytes passed the
    server's 1 MiB check and was then closed with 1009 by the layer)."""
    import websocket

    from .server_fixtures import recv_close_code

    layer = InMemoryChannelLayer()
    server = chanlite_server(workers=0, layer=layer, websocket_max_message_size=None)
    ws = accepted_by_hand(server, layer, "/echo/")
    [conn] = server.connections
    limit = conn.session.ws.max_message_size
    assert 1024 * 1024 - 200 < limit < 1024 * 1024
    if kind == "text":
        ws.send("é" * (limit // 2) + "x" * (limit % 2))
    else:
        ws.send_binary(b"\xff" * limit)
    got = layer_wait(layer, "websocket.receive")
    assert len(got[kind].encode() if kind == "text" else got[kind]) == limit
    # One byte more: refused from the frame header alone (the payload need
    # not even be sent), with 1009.
    opcode = 0x81 if kind == "text" else 0x82
    ws.sock.sendall(bytes([opcode, 0x80 | 127]) + (limit + 1).to_bytes(8, "big") + b"\0" * 4)
    assert recv_close_code(ws) == 1009
    with pytest.raises((websocket.WebSocketException, OSError)):
        ws.recv()


def test_an_explicit_websocket_limit_the_layer_cannot_carry_is_an_error_at_start():
    from chanlite.server.config import ServerConfig
    from chanlite.server.server import Server

    layer = InMemoryChannelLayer(max_message_size=64 * 1024)
    with pytest.raises(ValueError, match=r"websocket_max_message_size=65536 does not fit"):
        Server(layer, ServerConfig(port=0, websocket_max_message_size=64 * 1024),
               wsgi_app=lambda environ, start: [], router=None)
    Server(layer, ServerConfig(port=0, websocket_max_message_size=60 * 1024),
           wsgi_app=lambda environ, start: [], router=None).loop.close()


# ------------------------------------------------- settings and commands


def test_backpressure_timeout_is_a_validated_setting():
    from chanlite.server.config import ServerConfig

    assert ServerConfig().backpressure_timeout == 10.0
    assert ServerConfig(backpressure_timeout=2.5).backpressure_timeout == 2.5
    with pytest.raises(ValueError, match="backpressure_timeout must be a number of seconds"):
        ServerConfig(backpressure_timeout=-1)


@pytest.mark.parametrize("flag, value, error", [
    ("--backpressure-timeout", "-1", "backpressure_timeout must be a number of seconds >= 0"),
    ("--websocket-max-message-size", "2000000", "websocket_max_message_size=2000000 does not "
                                                 "fit the channel layer"),
])
def test_chanlite_serve_flags_are_validated_before_serving(flag, value, error):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "chanlite.server", "serve", "tests.server.server_asgi:channel_layer",
         "--port", "0", flag, value],
        cwd=root, capture_output=True, text=True, timeout=60,
        env=dict(os.environ,
                 DJANGO_SETTINGS_MODULE="tests.server.server_settings"))
    assert out.returncode != 0 and error in out.stderr, out.stderr


def test_runserver_has_a_backpressure_timeout_option():
    from chanlite.management.commands.runserver import Command

    parser = Command().create_parser("manage.py", "runserver")
    assert parser.parse_args(["--backpressure-timeout", "3"]).backpressure_timeout == 3.0
    assert parser.parse_args([]).backpressure_timeout is None  # CHANLITE_SERVER or 10


def test_an_http_request_waits_for_room_instead_of_503(chanlite_server):
    from .server_fixtures import http_request

    layer = InMemoryChannelLayer(channel_capacity={"http.request": 1})
    server = chanlite_server(workers=0, layer=layer)
    layer.send("http.request", {"filler": True})
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("r", http_request(server, "GET", "/chan/hello/")))
    thread.start()
    eventually(lambda: server.sender.waiting, "the request to wait for room", timeout=WAIT)
    assert layer_wait(layer, "http.request") == {"filler": True}
    request = layer_wait(layer, "http.request")
    assert request["path"] == "/chan/hello/"
    layer.send(request["reply_channel"], {"status": 200, "content": b"late but fine"})
    thread.join(WAIT)
    assert result["r"][0] == 200 and result["r"][2] == b"late but fine"


def test_a_handshake_waits_for_room_on_websocket_connect(chanlite_server):
    from .server_fixtures import ws_connect

    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    server = chanlite_server(workers=0, layer=layer)
    layer.send("websocket.connect", {"filler": True})
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ws", ws_connect(server, "/echo/")))
    thread.start()
    eventually(lambda: server.sender.waiting, "the handshake to wait for room", timeout=WAIT)
    assert layer_wait(layer, "websocket.connect") == {"filler": True}
    connect = layer_wait(layer, "websocket.connect")
    layer.send(connect["reply_channel"], {"accept": True})
    thread.join(WAIT)
    ws = result["ws"]
    ws.send("hi")
    assert layer_wait(layer, "websocket.receive")["order"] == 1
    ws.close()
    assert layer_wait(layer, "websocket.disconnect")["order"] == 2


def test_a_request_body_waits_for_room_on_its_body_channel(chanlite_server):
    """A body streamed to a consumer that reads slowly: a chunk that finds the
    body channel full (capacity 1 here) waits for room, in order, instead of
    failing the request with 503."""
    from .server_fixtures import raw_socket, read_until_closed

    layer = InMemoryChannelLayer(channel_capacity={"http.request.body?*": 1})
    server = chanlite_server(workers=0, layer=layer, body_chunk_size=1000)
    pieces = [bytes([65 + i]) * 1000 for i in range(4)]
    sock = raw_socket(server)
    sock.sendall(b"POST /chan/body/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Length: 4000\r\n\r\n" + pieces[0])
    request = layer_wait(layer, "http.request")  # the first chunk rides on it
    body_channel = request["body_channel"]

    sock.sendall(pieces[1])
    eventually(lambda: layer.channel_statistics(body_channel)["messages_pending"] == 1,
               "the second chunk to reach the body channel", timeout=WAIT)
    sock.sendall(pieces[2])
    eventually(lambda: server.sender.waiting, "the third chunk to wait for room", timeout=WAIT)
    sock.sendall(pieces[3])
    received = request["body"]
    while True:
        chunk = layer_wait(layer, body_channel)
        received += chunk["content"]
        if not chunk["more_content"]:
            break
    assert received == b"".join(pieces)
    layer.send(request["reply_channel"], {"status": 200, "content": b"%d" % len(received)})
    reply = read_until_closed(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"4000"), reply


def test_a_paused_websocket_is_not_closed_for_a_pong_it_could_not_read(chanlite_server):
    """While back-pressure stops reading, the client's pong may sit unread in
    the socket: the ping timeout must not close the connection (1011) - only
    the backpressure timeout may end the wait."""

    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    server = chanlite_server(workers=0, layer=layer, websocket_ping_interval=0.1,
                             websocket_ping_timeout=0.2, backpressure_timeout=30)
    ws = accepted_by_hand(server, layer, "/echo/")
    layer.send("websocket.receive", {"filler": True})
    ws.send("waits")
    [conn] = server.connections
    eventually(lambda: not conn.reading, "back-pressure to pause the connection", timeout=WAIT)
    time.sleep(1.0)  # several ping timeouts pass while paused
    from chanlite.server.ws_session import WSState

    assert conn.session.state is WSState.OPEN, (
        "closed while paused: an unread pong taken for silence")
    assert layer_wait(layer, "websocket.receive") == {"filler": True}
    got = layer_wait(layer, "websocket.receive")
    assert (got["text"], got["order"]) == ("waits", 1)
    ws.close()


def test_connections_given_up_are_logged_as_counts_not_one_line_each(chanlite_server, caplog):
    import logging

    from .server_fixtures import recv_close_code, ws_connect

    caplog.set_level(logging.INFO, logger="chanlite.server")
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    server = chanlite_server(workers=0, layer=layer, backpressure_timeout=0.3)
    sockets = []
    for _ in range(5):
        result = {}
        thread = threading.Thread(
            target=lambda result=result: result.setdefault("ws", ws_connect(server, "/echo/")))
        thread.start()
        layer.send(layer_wait(layer, "websocket.connect")["reply_channel"], {"accept": True})
        thread.join(WAIT)
        sockets.append(result["ws"])
    layer.send("websocket.receive", {"filler": True})
    for ws in sockets:
        ws.send("stuck")
    assert [recv_close_code(ws) for ws in sockets] == [1013] * 5
    gave_up = [r.getMessage() for r in caplog.records if "gave up on" in r.getMessage()]
    paused = [r.getMessage() for r in caplog.records if "paused reading" in r.getMessage()]
    assert len(gave_up) == 1 and "gave up on 1 connection(s)" in gave_up[0], gave_up
    assert len(paused) == 1, paused
    assert server.sender.closed_count.total == 5
    server.sender.closed_count.flush()  # what the interval timer writes 10 s later
    gave_up = [r.getMessage() for r in caplog.records if "gave up on" in r.getMessage()]
    assert "gave up on 4 connection(s) in the last 10s" in gave_up[-1], gave_up
    for ws in sockets:
        ws.close()
