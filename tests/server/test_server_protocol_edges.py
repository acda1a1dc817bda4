"""Edges of the server <-> consumer message contract, over real sockets.

/work/shared/spec/asgi1-messages.md and docs/server.md decide what the server
does with replies that are repeated, early, invalid or late, and with a
channel layer that is full or failing. Every test here runs a live server on
the in-memory layer (embedded workers unless the test needs none) with its
own routing, and checks both what the client sees and what the server logs.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
import websocket

from chanlite.exceptions import DenyConnection
from chanlite.generic.websockets import JsonWebsocketConsumer, WebsocketDemultiplexer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import route, route_class
from chanlite.testing import eventually

from .server_fixtures import (
    WAIT,
    http_request,
    layer_wait,
    raw_socket,
    read_until_closed,
    recv_close_code,
    ws_connect,
)

SERVER_LOG = "chanlite.server"


def server_records(caplog, level: int = logging.DEBUG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(SERVER_LOG) and r.levelno >= level]


def assert_no_server_errors(caplog) -> None:
    bad = [r.getMessage() for r in server_records(caplog, logging.WARNING)]
    assert bad == [], bad


def left_after_stop(server, *channels: str) -> list:
    """Stop ``server`` and its embedded workers, then take everything left on
    ``channels``. Once stopped nothing more can be sent, so an empty list
    proves a message never came (a fixed wait passes trivially when the
    machine is slow)."""
    assert server.shutdown(10), "server did not stop within 10s"
    left = []
    for channel in channels:
        while (got := server.layer.receive([channel], block=False))[0] is not None:
            left.append(got)
    return left


def wait_idle(server) -> None:
    """Every connection closed and every reply channel forgotten (no leak)."""
    eventually(lambda: not server.connections and not server.replies,
               lambda: f"no connections/replies "
                       f"(have {len(server.connections)} / {server.replies})")


# ----------------------------------------------------------- consumers


def record_disconnect(message, **kwargs):
    message.channel_layer.send("test.disconnects", {"code": message["code"],
                                                    "order": message["order"],
                                                    "path": message["path"]})


def say_reply_channel(message, **kwargs):
    message.reply_channel.send({"accept": True})
    message.reply_channel.send({"text": message.reply_channel.name})


def echo(message, **kwargs):
    message.reply_channel.send({"text": message["text"]})


# 1. A repeated accept, the way multiplexed user code produces it.

class OldStyleStream(JsonWebsocketConsumer):
    """A stream consumer that accepts on its own, as code written for a plain
    (non-multiplexed) socket does: inside a demultiplexer, which has accepted
    already, this is a second ``{"accept": True}`` for the same socket."""

    def connect(self, message, **kwargs):
        message.reply_channel.send({"accept": True})

    def receive(self, content, multiplexer=None, **kwargs):
        self.message.reply_channel.send({"accept": True})
        multiplexer.send({"echo": content})


class Demux(WebsocketDemultiplexer):
    consumers = {"a": OldStyleStream, "b": OldStyleStream}


def accept_twice(message, **kwargs):
    message.reply_channel.send({"accept": True})
    message.reply_channel.send({"accept": True})


def accept_again_then_echo(message, **kwargs):
    message.reply_channel.send({"accept": True})
    message.reply_channel.send({"accept": True, "text": "again:" + message["text"]})


# 2. Rejections before the handshake is accepted.

def deny(message, **kwargs):
    raise DenyConnection


def accept_then_deny(message, **kwargs):
    message.reply_channel.send({"accept": True})  # deferred: discarded by DenyConnection
    raise DenyConnection


def close_with_code(message, **kwargs):
    message.reply_channel.send({"close": 4000})


# 3. Invalid websocket.send replies.

def invalid_then_valid(message, **kwargs):
    reply = message.reply_channel
    reply.send({"text": "a", "bytes": b"b"})
    reply.send({"txt": "unknown key"})
    reply.send({"text": "still open"})


# 4. Late replies.

def http_stream_forever(message, **kwargs):
    message.reply_channel.send({"status": 200, "headers": [], "content": b"first,",
                                "more_content": True})
    message.channel_layer.send("test.streaming", {"reply_channel": message.reply_channel.name})


def http_disconnect_seen(message, **kwargs):
    message.channel_layer.send("test.http_disconnect", {"path": message["path"]})


def http_hello(message, **kwargs):
    message.reply_channel.send({"status": 200, "headers": [], "content": b"hello"})


routing = [
    route_class(Demux, path=r"^/demux/$"),
    route("websocket.connect", accept_twice, path=r"^/twice/$"),
    route("websocket.receive", accept_again_then_echo, path=r"^/twice/$"),
    route("websocket.connect", deny, path=r"^/deny/$"),
    route("websocket.connect", accept_then_deny, path=r"^/accept-then-deny/$"),
    route("websocket.connect", close_with_code, path=r"^/close-code/$"),
    route("websocket.connect", say_reply_channel, path=r"^/name/$"),
    route("websocket.receive", invalid_then_valid, path=r"^/name/$"),
    route("websocket.connect", say_reply_channel, path=r"^/late/$"),
    route("websocket.receive", echo, path=r"^/late/$"),
    route("websocket.disconnect", record_disconnect),
    route("http.request", http_stream_forever, path=r"^/chan/stream-forever/$"),
    route("http.request", http_hello, path=r"^/chan/hello/$"),
    route("http.disconnect", http_disconnect_seen),
]


@pytest.fixture
def server(chanlite_server):
    def start(**options):
        options.setdefault("routing", routing)
        return chanlite_server(**options)
    return start


# ------------------------------------------------- 1. repeated accept


def test_demultiplexed_streams_accepting_again_is_a_no_op(server, caplog):
    """The demultiplexer accepts, then each stream's connect sends another
    ``{"accept": True}``, and every receive one more: the socket stays open,
    frames flow, nothing is logged above DEBUG."""
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server()
    ws = ws_connect(srv, "/demux/")
    for stream in ("a", "b", "a"):
        ws.send(json.dumps({"stream": stream, "payload": {"n": stream}}))
        assert json.loads(ws.recv()) == {"stream": stream, "payload": {"echo": {"n": stream}}}
    ws.close()
    wait_idle(srv)
    assert_no_server_errors(caplog)


def test_accept_on_an_open_socket_sends_nothing_and_keeps_it_open(server, caplog):
    """A second 101 (or any stray bytes) would corrupt the frame stream: read
    the raw socket and check that only the echo frame arrives."""
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server()
    ws = ws_connect(srv, "/twice/")
    ws.send("x")
    opcode, data = ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_TEXT, b"again:x")
    ws.sock.settimeout(0.2)  # accept_again_then_echo sent an extra accept after the text
    with pytest.raises((socket.timeout, websocket.WebSocketTimeoutException)):
        ws.recv_data()
    ws.sock.settimeout(WAIT)
    ws.send("y")
    assert ws.recv() == "again:y"
    ws.close()
    wait_idle(srv)
    assert_no_server_errors(caplog)


# ------------------------------------------ 2. rejecting the handshake


@pytest.mark.parametrize("path", ["/deny/", "/accept-then-deny/", "/close-code/"])
def test_rejection_before_accept_is_403_then_one_disconnect_1006(server, path):
    """``DenyConnection`` (which replies ``{"close": True}``, discarding the
    consumer's own deferred accept) and ``{"close": <code>}`` before accepting
    reject the handshake with 403. The consumer was sent ``websocket.connect``,
    so exactly one ``websocket.disconnect`` follows (code 1006: no WebSocket
    was ever open; order 1), as with Daphne."""
    srv = server()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(srv, path)
    assert info.value.status_code == 403
    assert layer_wait(srv.layer, "test.disconnects") == {"code": 1006, "order": 1, "path": path}
    wait_idle(srv)
    extra = left_after_stop(srv, "websocket.disconnect", "test.disconnects")
    assert extra == [], f"a second websocket.disconnect: {extra}"


def test_denied_handshake_over_a_raw_socket_is_a_plain_403_response(server):
    srv = server()
    sock = raw_socket(srv)
    sock.sendall(b"GET /deny/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    response = read_until_closed(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 403 ")
    assert b"sec-websocket-accept" not in response.lower()


# --------------------------------------------- 3. invalid websocket.send


def test_invalid_websocket_send_is_logged_with_the_channel_and_ignored(server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server()
    ws = ws_connect(srv, "/name/")
    reply_channel = ws.recv()
    assert reply_channel.startswith(srv.prefix)
    ws.send("go")
    assert ws.recv() == "still open"  # the two invalid replies sent nothing and closed nothing
    errors = [r.getMessage() for r in server_records(caplog, logging.ERROR)]
    assert len(errors) == 2, errors
    assert all(reply_channel in e and "invalid websocket.send" in e for e in errors), errors
    assert "'text' and 'bytes'" in errors[0]
    assert "unknown keys ['txt']" in errors[1]
    ws.close()
    wait_idle(srv)


# ----------------------------------------------------- 4. late replies


def test_replies_for_a_closed_websocket_are_dropped_quietly(server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server()
    ws = ws_connect(srv, "/late/")
    reply_channel = ws.recv()
    ws.close()
    layer_wait(srv.layer, "test.disconnects")
    wait_idle(srv)
    for message in ({"text": "late"}, {"accept": True}, {"close": True},
                    {"status": 200, "headers": [], "content": b"wrong kind"}):
        srv.layer.send(reply_channel, message)
    eventually(lambda: sum("which is gone" in r.getMessage() for r in caplog.records) >= 4,
               "four 'gone' debug lines")
    gone = [r for r in server_records(caplog) if "which is gone" in r.getMessage()]
    assert {r.levelno for r in gone} == {logging.DEBUG}
    assert all(reply_channel in r.getMessage() for r in gone)
    assert_no_server_errors(caplog)
    # The loop is fine: a new socket works.
    again = ws_connect(srv, "/late/")
    assert again.recv().startswith(srv.prefix)
    again.send("ok")
    assert again.recv() == "ok"
    again.close()
    wait_idle(srv)


def test_http_response_chunks_after_the_client_left_are_dropped_quietly(server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server()
    sock = raw_socket(srv)
    sock.sendall(b"GET /chan/stream-forever/ HTTP/1.1\r\nHost: x\r\n\r\n")
    reply_channel = layer_wait(srv.layer, "test.streaming")["reply_channel"]
    head = b""
    while b"first," not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200 ")
    sock.close()
    assert layer_wait(srv.layer, "test.http_disconnect") == {"path": "/chan/stream-forever/"}
    wait_idle(srv)
    srv.layer.send(reply_channel, {"content": b"late,", "more_content": True})
    srv.layer.send(reply_channel, {"content": b"end"})
    eventually(lambda: sum("which is gone" in r.getMessage() for r in caplog.records) >= 2,
               "two 'gone' debug lines")
    assert_no_server_errors(caplog)
    status, _, body = http_request(srv, "GET", "/chan/hello/")
    assert (status, body) == (200, b"hello")
    wait_idle(srv)


# ------------------------------------------------------ 5. ChannelFull


def test_websocket_connect_channel_full_past_the_timeout_refuses_with_503(server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    srv = server(workers=0, layer=layer, backpressure_timeout=0.3)
    layer.send("websocket.connect", {"filler": True})
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(srv, "/name/")
    assert info.value.status_code == 503
    warnings = [r.getMessage() for r in server_records(caplog, logging.WARNING)]
    assert any("websocket.connect" in e and "503" in e for e in warnings), warnings
    # Nothing was sent, so no websocket.disconnect either; nothing leaks.
    wait_idle(srv)
    assert layer.receive(["websocket.disconnect"], block=False) == (None, None)
    assert layer.receive(["websocket.connect"], block=False)[1] == {"filler": True}


def test_http_request_channel_full_past_the_timeout_answers_503_and_logs(server, caplog):
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    layer = InMemoryChannelLayer(channel_capacity={"http.request": 1})
    srv = server(workers=0, layer=layer, backpressure_timeout=0.3)
    layer.send("http.request", {"filler": True})
    status, _, _ = http_request(srv, "GET", "/chan/hello/")
    assert status == 503
    warnings = [r.getMessage() for r in server_records(caplog, logging.WARNING)]
    assert any("http.request" in e and "503" in e for e in warnings), warnings
    wait_idle(srv)


# ------------------------------------- one connection's failure stays its own


class BrokenLayer(InMemoryChannelLayer):
    """A layer whose ``send`` fails with something other than ChannelFull on
    some channels (a Redis or IPC layer can raise OSError-like errors)."""

    broken = frozenset({"http.request", "websocket.receive"})

    def send(self, channel, message):
        if channel in self.broken:
            raise RuntimeError(f"layer broken for {channel}")
        return super().send(channel, message)


def test_unexpected_error_on_a_connection_closes_it_and_the_server_keeps_serving(server, caplog):
    """An exception escaping a session (here: the layer's ``send`` failing in
    an unexpected way) must cost only that connection: it is closed - not left
    open with no timer, the client waiting forever - and the consumer still
    gets its ``websocket.disconnect``."""
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server(layer=BrokenLayer())
    sock = raw_socket(srv)
    sock.sendall(b"GET /chan/hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    read_until_closed(sock)  # before the fix: socket.timeout, the connection hung open
    sock.close()
    wait_idle(srv)
    ws = ws_connect(srv, "/late/")
    ws.recv()
    ws.send("boom")
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv()
    ws.close()
    assert layer_wait(srv.layer, "test.disconnects")["code"] == 1006
    wait_idle(srv)
    crashes = [r for r in server_records(caplog, logging.ERROR) if r.exc_info]
    assert len(crashes) == 2 and all("layer broken" in str(r.exc_info[1]) for r in crashes)
    status, _, _ = http_request(srv, "GET", "/")  # the loop is alive (a Django view)
    assert status in (200, 404)
    # The request never reached a consumer, so no http.disconnect for it either.
    extra = left_after_stop(srv, "http.disconnect", "test.http_disconnect")
    assert extra == [], f"http.disconnect for a request never delivered: {extra}"


def bad_header_app(environ, start_response):
    if environ["PATH_INFO"] == "/bad-header":
        start_response("200 OK", [("X-Count", 1)])  # not a str: the server cannot encode it
        return [b"never sent"]
    if environ["PATH_INFO"] == "/exit":
        raise SystemExit(3)  # sys.exit() in a view: Django lets it through
    if environ["PATH_INFO"] == "/bad-length":
        # A declared length shorter than the streamed body (a view bug).
        start_response("200 OK", [("Content-Length", str(300_010))])
        return iter([b"a" * 300_000, b"b" * 300_000, b"c"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fine"]


def test_wsgi_response_the_server_cannot_encode_is_500_not_a_hang(server):
    srv = server(wsgi_app=bad_header_app, threads=1)
    status, _, _ = http_request(srv, "GET", "/bad-header")  # before the fix: timed out
    assert status == 500
    assert http_request(srv, "GET", "/ok")[::2] == (200, b"fine")
    wait_idle(srv)


def test_streamed_wsgi_body_the_server_refuses_frees_the_pool_thread_at_once(server):
    """When h11 refuses a streamed chunk (more than the declared
    Content-Length), the connection is dropped and the pool thread must not
    wait 60 s for a drain that can never come: with one pool thread, the next
    request is answered at once."""
    srv = server(wsgi_app=bad_header_app, threads=1)
    sock = raw_socket(srv)
    sock.sendall(b"GET /bad-length HTTP/1.1\r\nHost: x\r\n\r\n")
    read_until_closed(sock)
    sock.close()
    started = time.monotonic()
    assert http_request(srv, "GET", "/ok")[::2] == (200, b"fine")
    assert time.monotonic() - started < 2
    wait_idle(srv)


class BrokenDisconnectLayer(InMemoryChannelLayer):
    def send(self, channel, message):
        if channel in ("websocket.disconnect", "http.disconnect"):
            raise RuntimeError(f"layer broken for {channel}")
        return super().send(channel, message)


def test_failing_disconnect_notification_still_closes_the_socket(server, caplog):
    """The rejection by the connect timeout runs in a timer: if sending
    ``websocket.disconnect`` fails there, the 403 must still be completed by
    closing the socket (before: it stayed open, the client waiting)."""
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server(layer=BrokenDisconnectLayer(), workers=0, websocket_connect_timeout=0.2)
    sock = raw_socket(srv)
    sock.sendall(b"GET /name/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 403 ")
    sock.close()
    wait_idle(srv)
    assert any("websocket.disconnect" in r.getMessage() and r.exc_info
               for r in server_records(caplog, logging.ERROR))


def test_connection_close_header_is_sent_once():
    """A rejected upgrade (request body state unknown to h11 *and* must_close)
    used to carry ``connection: close`` twice."""
    from chanlite.server.http import HTTPCore

    core = HTTPCore()
    core.receive(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert core.next_event().websocket
    assert core.reject_websocket(403).lower().count(b"connection: close") == 1
    core = HTTPCore()
    core.receive(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    core.next_event()
    core.must_close = True
    assert core.response_start(503, [], b"busy").lower().count(b"connection: close") == 1


def test_each_websocket_reply_is_validated_once(server, monkeypatch):
    """The session validates a reply (to log errors with its channel); the
    core must not validate it again on the hot path."""
    from chanlite.server import websocket as core_module
    from chanlite.server import ws_session

    calls = []

    def counting(message, _real=core_module.check_send):
        calls.append(message)
        return _real(message)

    monkeypatch.setattr(core_module, "check_send", counting)
    monkeypatch.setattr(ws_session, "check_send", counting)
    srv = server()
    ws = ws_connect(srv, "/late/")
    ws.recv()
    ws.send("one")
    assert ws.recv() == "one"
    ws.close()
    wait_idle(srv)
    assert len(calls) == 3, calls  # accept, the reply channel's name, the echo


class RefusalCounter:
    """The pump's batch-slot semaphore, counting the acquires that timed out:
    each is one pump turn in which it could have handed over a batch."""

    def __init__(self, semaphore) -> None:
        self.semaphore = semaphore
        self.refused = 0

    def acquire(self, timeout=None) -> bool:
        got = self.semaphore.acquire(timeout=timeout)
        self.refused += not got
        return got

    def release(self) -> None:
        self.semaphore.release()


def test_reply_pump_hands_over_a_bounded_number_of_batches():
    """A loop that falls behind must leave replies in the layer (where its
    capacity applies), not have the pump move them all into the loop's
    unbounded hand-over deque."""
    import threading

    from chanlite.server.pump import ReplyPump

    layer = InMemoryChannelLayer()
    prefix = "chanlite.response.pumptest!"
    batches: list = []
    arrived = threading.Event()

    def deliver(batch):  # the "loop": takes batches but does not process them yet
        batches.append(batch)
        arrived.set()

    for n in range(2000):
        layer.send(f"{prefix}{n % 7}", {"n": n})
    pump = ReplyPump(layer, prefix, deliver, wait=0.05, max_batches=2)
    pump._slots = slots = RefusalCounter(pump._slots)
    pump.start()
    try:
        assert arrived.wait(WAIT)
        eventually(lambda: len(batches) >= 2, "the second batch to be handed over")
        # An unbounded pump would hand over a third batch now; the assertion
        # is that none comes while the pump is refused a slot three times.
        refused = slots.refused
        eventually(lambda: slots.refused >= refused + 3 or len(batches) > 2,
                   "the pump to be refused a batch slot three times")
        assert len(batches) == 2, f"{len(batches)} batches handed over, bound is 2"
        assert sum(map(len, batches)) == 512  # 2 x _BATCH; the other 1488 wait in the layer
        for _ in range(len(batches)):
            pump.done()
        eventually(lambda: len(batches) == 4, "two more batches after done()")
        while sum(map(len, batches)) < 2000:  # processing as the loop would: all arrive, in order
            before = len(batches)
            pump.done()
            eventually(lambda b=before: len(batches) > b or sum(map(len, batches)) == 2000, "more")
        assert [m["n"] for b in batches for _, m in b] == list(range(2000))
    finally:
        assert pump.stop(WAIT)


def test_accepted_tcp_sockets_have_tcp_nodelay(server):
    """docs/server.md promises it (one-send responses plus NODELAY avoid the
    delayed-ACK stall); check the server's side of a live connection."""
    srv = server()
    sock = raw_socket(srv)
    try:
        conns = eventually(lambda: list(srv.connections), "the server to accept")
        assert conns[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()
    wait_idle(srv)


def test_sys_exit_in_a_view_does_not_kill_the_pool_thread(server):
    """SystemExit is not an Exception: it used to end the pool thread silently
    (``threading`` ignores it), leaving the client waiting for ever and the
    pool one thread smaller - with one thread, every later view hung."""
    srv = server(wsgi_app=bad_header_app, threads=1)
    assert http_request(srv, "GET", "/exit")[0] == 500
    assert http_request(srv, "GET", "/ok")[::2] == (200, b"fine")
    wait_idle(srv)


def test_unexpected_error_in_a_deferred_step_also_closes_only_that_connection(server, caplog):
    """Pipelined requests after the first are processed from ``call_soon``,
    outside ``on_ready``: a failure there must close the connection too
    (before: the client got the first response and waited for ever)."""
    caplog.set_level(logging.DEBUG, logger=SERVER_LOG)
    srv = server(layer=BrokenLayer(), wsgi_app=bad_header_app)
    sock = raw_socket(srv)
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /chan/hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    data = read_until_closed(sock)
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"fine")
    wait_idle(srv)
    assert http_request(srv, "GET", "/ok")[::2] == (200, b"fine")


def test_websocket_receive_channel_full_closes_1013_without_a_gap_in_order(server):
    """A frame that could not be sent (``websocket.receive`` full for the whole
    ``backpressure_timeout``: close 1013) must not use up an ``order``:
    ``websocket.disconnect`` carries the number after the last *delivered*
    receive, or a consumer with ``strict_ordering`` waits for ever for the
    missing one and never runs its disconnect (group cleanup)."""
    import threading

    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    srv = server(workers=0, layer=layer, backpressure_timeout=0.3)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ws", ws_connect(srv, "/name/")))
    thread.start()
    reply_channel = layer_wait(layer, "websocket.connect")["reply_channel"]
    layer.send(reply_channel, {"accept": True})
    thread.join(WAIT)
    ws = result["ws"]
    ws.send("delivered")
    assert layer_wait(layer, "websocket.receive")["order"] == 1
    layer.send("websocket.receive", {"filler": True})  # now full again
    ws.send("refused")
    assert recv_close_code(ws) == 1013
    ws.close()
    disconnect = layer_wait(layer, "websocket.disconnect")
    assert disconnect["order"] == 2, disconnect
    wait_idle(srv)


def test_client_leaving_during_the_handshake_is_reported_at_once(server):
    """While the consumer decides, the server still notices the client
    leaving: ``websocket.disconnect`` (1006, order 1) comes now, not when the
    connect timeout fires."""
    srv = server(workers=0, websocket_connect_timeout=30)
    sock = raw_socket(srv)
    sock.sendall(b"GET /name/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    reply_channel = layer_wait(srv.layer, "websocket.connect")["reply_channel"]
    sock.close()
    disconnect = layer_wait(srv.layer, "websocket.disconnect")
    assert disconnect == {"reply_channel": reply_channel, "path": "/name/", "code": 1006,
                          "order": 1}
    wait_idle(srv)
    srv.layer.send(reply_channel, {"accept": True})  # a late accept is dropped quietly


def test_frames_sent_before_the_101_are_delivered_after_accept(server):
    """Clients must wait for the 101, but bytes that come early are kept (up to
    a bound) and become the first ``websocket.receive`` once accepted."""
    srv = server(workers=0)
    sock = raw_socket(srv)
    frame = bytes([0x81, 0x80 | 5]) + b"\0\0\0\0" + b"early"  # masked with a zero key
    sock.sendall(b"GET /name/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    reply_channel = layer_wait(srv.layer, "websocket.connect")["reply_channel"]
    sock.sendall(frame)

    def frame_held_before_101():  # white-box: the early bytes wait in the HTTP core
        for conn in list(srv.connections):
            core = getattr(conn.session, "core", None)
            if core is not None and core.buffered >= len(frame):
                return True
        return False

    eventually(frame_held_before_101, "the server to read the early frame before the accept")
    srv.layer.send(reply_channel, {"accept": True})
    assert layer_wait(srv.layer, "websocket.receive")["text"] == "early"
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    sock.close()
    assert layer_wait(srv.layer, "websocket.disconnect")["order"] == 2
    wait_idle(srv)
