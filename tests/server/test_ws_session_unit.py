"""WebSocketSession, driven without sockets: bytes and replies in; bytes, layer
messages, states and named timers out (see tests/server/fakes.py)."""

from __future__ import annotations

import selectors

import pytest
from wsproto.connection import Connection as WSClient
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.server.ws_session import WebSocketSession, WSState, WSTimer

from .fakes import FakeHost

UPGRADE = (b"GET /ws/chat/?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n")
CONFIG = dict(websocket_connect_timeout=20.0, websocket_ping_interval=10.0,
              websocket_ping_timeout=5.0, websocket_close_timeout=3.0)


def handshake(host: FakeHost):
    """A client that sent the upgrade; returns (client, session, websocket.connect)."""
    client = host.connect()
    client.send(UPGRADE)
    session = client.session
    assert isinstance(session, WebSocketSession)
    return client, session, host.received("websocket.connect")


def opened(host: FakeHost):
    """An accepted WebSocket; returns (client, session, wsproto client)."""
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {"accept": True})
    assert client.written().startswith(b"HTTP/1.1 101 ")
    return client, session, WSClient(ConnectionType.CLIENT)


def frames(ws: WSClient, data: bytes) -> list:
    ws.receive_data(data)
    return list(ws.events())


@pytest.fixture
def host() -> FakeHost:
    return FakeHost(**CONFIG)


def test_handshake_waits_for_the_consumer_with_a_connect_timer(host):
    client, session, connect = handshake(host)
    assert connect["path"] == "/ws/chat/" and connect["order"] == 0
    assert connect["query_string"] == b"room=1"
    assert session.state is WSState.CONNECTING
    assert set(session.timers) == {WSTimer.CONNECT}
    assert client.written() == b""  # no 101 until the consumer decides
    # The registry's rule: listening once websocket.connect is on the layer.
    assert session.reply_channel in host.replies


def test_accept_sends_101_and_arms_the_ping_timer(host):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {"accept": True})
    data = client.written()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    assert session.state is WSState.OPEN
    assert set(session.timers) == {WSTimer.PING}
    assert ("WSCONNECT", "/ws/chat/", None) in host.access_lines


def test_connect_timeout_rejects_403_and_reports_disconnect(host):
    client, session, connect = handshake(host)
    host.loop.advance(19.9)
    assert session.state is WSState.CONNECTING
    host.loop.advance(0.2)
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert session.state is WSState.CLOSED and session.timers == {}
    assert client.conn.closed and client.conn in host.closed
    assert host.received("websocket.disconnect")["code"] == CloseReason.ABNORMAL_CLOSURE
    assert session.reply_channel not in host.replies
    assert host.loop.pending() == 0


def test_reject_reply_answers_403_before_any_101(host):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {"close": True})
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert session.state is WSState.CLOSED and len(host.replies) == 0
    assert ("WSREJECT", "/ws/chat/", 403) in host.access_lines


def test_refused_handshake_sends_nothing_to_the_layer(host):
    host.refusal = "no route"
    client, session, connect = handshake(host)
    assert connect is None
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert len(host.replies) == 0 and session.timers == {}


def test_bad_origin_is_refused_403(host):
    host.origin_ok = False
    client, session, connect = handshake(host)
    assert connect is None and client.written().startswith(b"HTTP/1.1 403 ")


def test_frames_become_numbered_receives_and_replies_become_frames(host):
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="hello")) + ws.send(BytesMessage(data=b"\x00\x01")))
    first, second = host.received("websocket.receive"), host.received("websocket.receive")
    assert (first["text"], first["order"]) == ("hello", 1)
    assert (second["bytes"], second["order"]) == (b"\x00\x01", 2)
    assert first["reply_channel"] == session.reply_channel and first["path"] == "/ws/chat/"
    assert host.reply(session.reply_channel, {"text": "hi"})
    assert frames(ws, client.written()) == [TextMessage(data="hi")]


def test_a_ping_from_the_client_is_answered(host):
    client, session, ws = opened(host)
    client.send(ws.send(Ping(payload=b"p")))
    assert frames(ws, client.written()) == [Pong(payload=b"p")]


def test_ping_timer_pings_and_a_pong_cancels_the_pong_timer(host):
    client, session, ws = opened(host)
    host.loop.advance(10.0)
    assert frames(ws, client.written()) == [Ping(payload=b"chanlite")]
    assert set(session.timers) == {WSTimer.PING, WSTimer.PONG}
    client.send(ws.send(Pong(payload=b"chanlite")))
    assert set(session.timers) == {WSTimer.PING}
    assert session.state is WSState.OPEN


def test_no_pong_closes_1011_then_the_close_timer_drops_the_socket(host):
    client, session, ws = opened(host)
    host.loop.advance(10.0)
    client.written()
    host.loop.advance(5.0)  # the pong timeout
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.INTERNAL_ERROR
    assert close.reason == "ping timeout"
    assert session.state is WSState.CLOSED
    assert set(session.timers) == {WSTimer.CLOSE}
    assert host.received("websocket.disconnect")["code"] == 1011
    assert not client.conn.closed  # waiting for the client's close reply
    host.loop.advance(3.0)
    assert client.conn.closed and session.timers == {}


def test_client_close_is_echoed_and_reported_once(host):
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="last")))
    client.send(ws.send(CloseConnection(code=1000, reason="bye")))
    [echo] = frames(ws, client.written())
    assert isinstance(echo, CloseConnection) and echo.code == 1000
    assert host.received("websocket.receive")["order"] == 1
    disconnect = host.received("websocket.disconnect")
    assert (disconnect["code"], disconnect["order"]) == (1000, 2)
    assert client.conn.closed and session.state is WSState.CLOSED
    assert host.received("websocket.disconnect") is None  # exactly one
    assert ("WSDISCONNECT", "/ws/chat/", 1000) in host.access_lines
    assert not host.reply(session.reply_channel, {"text": "late"})  # forgotten


def test_eof_reports_1006(host):
    client, session, ws = opened(host)
    client.send_eof()
    disconnect = host.received("websocket.disconnect")
    assert disconnect == {"reply_channel": session.reply_channel, "path": "/ws/chat/",
                          "code": CloseReason.ABNORMAL_CLOSURE, "order": 1}
    assert client.conn.closed and session.timers == {}


def test_eof_while_the_consumer_decides_reports_1006(host):
    client, session, connect = handshake(host)
    client.send_eof()
    assert host.received("websocket.disconnect")["code"] == CloseReason.ABNORMAL_CLOSURE
    assert client.conn.closed and session.state is WSState.CLOSED


def test_frames_sent_before_the_101_are_delivered_after_the_accept(host):
    client = host.connect()
    early = WSClient(ConnectionType.CLIENT)
    client.send(UPGRADE + early.send(TextMessage(data="early")))
    connect = host.received("websocket.connect")
    assert host.received("websocket.receive") is None  # held until the consumer decides
    assert host.reply(connect["reply_channel"], {"accept": True})
    received = host.received("websocket.receive")
    assert (received["text"], received["order"]) == ("early", 1)


def test_drain_closes_open_sockets_1001_and_refuses_pending_handshakes(host):
    client, session, ws = opened(host)
    session.drain()
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.GOING_AWAY
    assert set(session.timers) == {WSTimer.CLOSE}
    pending, pending_session, _ = handshake(host)
    pending_session.drain()
    assert pending.written().startswith(b"HTTP/1.1 503 ")


def test_a_message_above_the_limit_closes_1009(host):
    host = FakeHost(websocket_max_message_size=10, **CONFIG)
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="x" * 11)))
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.MESSAGE_TOO_BIG
    assert host.received("websocket.receive") is None


def test_connect_waiting_for_room_is_not_listened_on_until_sent():
    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    layer.send("websocket.connect", {"filler": True})
    host = FakeHost(layer=layer, **CONFIG)
    client, session, filler = handshake(host)
    assert filler == {"filler": True}  # ours waits in the outbox, not on the layer
    assert session.outbox.blocked
    assert session.reply_channel not in host.replies and session.timers == {}
    host.loop.run_ready()  # the retry the layer's space signal scheduled
    connect = host.received("websocket.connect")
    assert connect is not None and connect["reply_channel"] == session.reply_channel
    assert session.reply_channel in host.replies
    assert set(session.timers) == {WSTimer.CONNECT}


def test_a_client_leaving_before_the_connect_was_sent_gets_no_disconnect():
    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    layer.send("websocket.connect", {"filler": True})
    host = FakeHost(layer=layer, **CONFIG)
    client, session, _ = handshake(host)
    client.send_eof()
    host.loop.run_ready()
    assert session.state is WSState.CLOSED and not session.outbox.blocked
    assert host.received("websocket.connect") is None
    assert host.received("websocket.disconnect") is None


# --- What the session tells the consumer and the host (pinned by mutation testing, #20)


def test_connect_message_carries_the_request_and_the_host_is_asked_about_it(host):
    client, session, connect = handshake(host)
    assert connect["headers"][0] == [b"host", b"example.com"]
    assert [b"origin", b"http://example.com"] in connect["headers"]
    assert connect["root_path"] == "" and connect["scheme"] == "ws"
    assert connect["client"] == ["10.0.0.1", 50000]
    assert connect["server"] == ["127.0.0.1", 8000]
    assert host.origins_checked == [(b"http://example.com", "/ws/chat/")]
    assert host.refusals_asked == [connect]


@pytest.mark.parametrize("proto", [b"https", b"wss"])
def test_connect_scheme_is_wss_behind_a_trusted_https_proxy(proto):
    host = FakeHost(proxy_headers=True, trusted_proxies=["*"], root_path="/app", **CONFIG)
    client = host.connect()
    client.send(UPGRADE.replace(b"\r\n\r\n", b"\r\nX-Forwarded-Proto: " + proto + b"\r\n\r\n"))
    connect = host.received("websocket.connect")
    assert (connect["scheme"], connect["root_path"]) == ("wss", "/app")


def test_a_draining_server_refuses_a_handshake_503_and_tells_nobody(host):
    host.draining = True
    client, session, connect = handshake(host)
    assert connect is None and client.written().startswith(b"HTTP/1.1 503 ")
    assert host.origins_checked == [] and client.conn.closed


def test_refusals_say_why_in_the_log(host, caplog):
    host.origin_ok = False
    handshake(host)
    assert caplog.messages == [
        "WebSocket to /ws/chat/ rejected: origin http://example.com not allowed "
        "(ALLOWED_HOSTS or CHANLITE_SERVER['allowed_origins'])"]
    host.origin_ok, host.refusal = True, "no route for it"
    handshake(host)
    assert caplog.messages[1:] == ["WebSocket /ws/chat/ rejected (403): no route for it"]


def test_a_connect_too_large_for_the_layer_is_refused_503(caplog):
    host = FakeHost(layer=InMemoryChannelLayer(max_message_size=200), **CONFIG)
    client, session, connect = handshake(host)
    assert connect is None and client.written().startswith(b"HTTP/1.1 503 ")
    [message] = caplog.messages
    assert message.startswith("cannot send websocket.connect for /ws/chat/ (")
    assert message.endswith("): refusing with 503") and "200" in message  # the layer's limit


@pytest.mark.parametrize("reply", [{"close": 4000}, {"close": 3001}, {"close": 1000}])
def test_an_integer_close_before_the_101_rejects_403(host, reply, caplog):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], reply)
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert session.state is WSState.CLOSED
    assert caplog.messages == []  # a refusal the consumer asked for: nothing to report


@pytest.mark.parametrize(("reply", "problem"), [
    ({"close": 1}, "'close' must be True or a valid close code, not 1"),
    ({"close": 1006}, "'close' must be True or a valid close code, not 1006"),
    ({"close": 5000}, "'close' must be True or a valid close code, not 5000"),
    ({"close": 4000, "txt": "typo"},
     "unknown keys ['txt'] (allowed: accept, text, bytes, close)"),
    ({"close": 4000, "text": b"not str"}, "'text' must be str, not bytes"),
])
def test_an_invalid_reply_with_an_integer_close_is_refused_and_logged_like_any(
        host, caplog, reply, problem):
    # No silent refusals: an integer ``close`` does not exempt a broken reply
    # from the "invalid reply" line the consumer's author needs.
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], reply)
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert session.state is WSState.CLOSED and client.conn.closed
    assert caplog.messages == [f"invalid reply to the WebSocket handshake for /ws/chat/ on "
                               f"{session.reply_channel}: {problem}; rejecting with 403"]
    assert ("WSREJECT", "/ws/chat/", 403) in host.access_lines
    assert host.received("websocket.disconnect")["code"] == CloseReason.ABNORMAL_CLOSURE


@pytest.mark.parametrize("first", [{"text": "last words"}, {"bytes": b"last"}, {"accept": True}])
def test_an_integer_close_with_data_or_accept_accepts_then_closes(host, first):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {**first, "close": 4000})
    data = client.written()
    assert data.startswith(b"HTTP/1.1 101 ")
    ws = WSClient(ConnectionType.CLIENT)
    got = frames(ws, data[data.index(b"\r\n\r\n") + 4:])
    assert isinstance(got[-1], CloseConnection) and got[-1].code == 4000
    expected = [TextMessage(data="last words")] if "text" in first else \
        [BytesMessage(data=b"last")] if "bytes" in first else []
    assert got[:-1] == expected


def test_an_integer_close_on_an_open_socket_is_a_close_frame(host):
    client, session, ws = opened(host)
    assert host.reply(session.reply_channel, {"close": 4001})
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == 4001


def test_an_invalid_handshake_reply_rejects_403_at_once_and_says_why(host, caplog):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {"accept": True, "txt": "typo"})
    assert client.written().startswith(b"HTTP/1.1 403 ")
    [message] = caplog.messages
    assert message.startswith(f"invalid reply to the WebSocket handshake for /ws/chat/ on "
                              f"{session.reply_channel}: unknown keys ['txt']")
    assert message.endswith("; rejecting with 403")


def test_an_invalid_send_on_an_open_socket_is_logged_and_dropped(host, caplog):
    client, session, ws = opened(host)
    assert host.reply(session.reply_channel, {"txt": "typo"})
    assert client.written() == b"" and session.state is WSState.OPEN
    [message] = caplog.messages
    assert message.startswith(
        f"invalid websocket.send for /ws/chat/ on {session.reply_channel}: unknown keys ['txt']")
    assert message.endswith("); dropped")  # the problem text, whole


def test_a_reply_that_neither_accepts_nor_rejects_waits(host):
    client, session, connect = handshake(host)
    assert host.reply(connect["reply_channel"], {"accept": None})
    assert client.written() == b"" and session.state is WSState.CONNECTING
    assert set(session.timers) == {WSTimer.CONNECT}


@pytest.mark.parametrize("key", ["text", "bytes"])
def test_envelope_size_is_what_the_largest_receive_adds_to_its_payload(key):
    from chanlite.layers import codec
    from chanlite.server.ws_session import envelope_size
    payload = "x" * 70000 if key == "text" else b"x" * 70000  # str32 / bin32 headers
    message = {key: payload, "reply_channel": "websocket.reply!abc", "path": "/p/",
               "order": 2**63 - 1}
    extra = len(codec.encode(message)) - 70000
    # "bytes" is one letter longer than "text": the bytes envelope is the larger.
    assert extra == envelope_size("websocket.reply!abc", "/p/") - (key == "text")


def test_the_default_message_limit_is_what_the_layer_can_carry():
    from chanlite.server.ws_session import envelope_size
    host = FakeHost(layer=InMemoryChannelLayer(max_message_size=4096), **CONFIG)
    client, session, ws = opened(host)
    room = 4096 - envelope_size(session.reply_channel, "/ws/chat/")
    assert session.message_limit() == room
    client.send(ws.send(TextMessage(data="x" * room)))
    assert len(host.received("websocket.receive")["text"]) == room
    client.send(ws.send(TextMessage(data="x" * (room + 1))))
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.MESSAGE_TOO_BIG


def test_a_pong_timeout_while_back_pressure_stops_reading_waits_again():
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = FakeHost(layer=layer, backpressure_timeout=60.0, **CONFIG)
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="a")) + ws.send(TextMessage(data="b")))
    assert session.outbox.blocked
    host.loop.advance(10.0)  # ping
    client.written()
    host.loop.advance(5.0)  # pong timeout: the pong may be unread behind the full channel
    assert session.state is WSState.OPEN and WSTimer.PONG in session.timers
    assert client.written() == b""
    assert host.received("websocket.receive")["text"] == "a"
    host.loop.run_ready()  # room again: "b" goes out, reading resumes
    assert not session.outbox.blocked and client.conn.reading
    assert host.received("websocket.receive")["text"] == "b"
    host.loop.advance(5.0)  # still no pong, nothing blocked: close 1011
    assert session.state is WSState.CLOSED
    close = frames(ws, client.written())[-1]  # after the next ping
    assert isinstance(close, CloseConnection) and close.code == CloseReason.INTERNAL_ERROR


def clocked_host(monkeypatch, layer, **config) -> FakeHost:
    """A host whose back-pressure timer reads the fake clock."""
    import types

    from chanlite.server import backpressure
    host = FakeHost(layer=layer, **{**CONFIG, **config})
    monkeypatch.setattr(backpressure, "time", types.SimpleNamespace(monotonic=host.loop.time))
    return host


def test_a_handshake_stuck_behind_a_full_connect_channel_gets_503(monkeypatch):
    layer = InMemoryChannelLayer(channel_capacity={"websocket.connect": 1})
    layer.send("websocket.connect", {"filler": True})
    host = clocked_host(monkeypatch, layer, backpressure_timeout=3.0)
    client = host.connect()
    client.send(UPGRADE)
    session = client.session
    host.loop.advance(2.9)
    assert client.written() == b"" and session.outbox.blocked
    host.loop.advance(0.2)
    assert client.written().startswith(b"HTTP/1.1 503 ")
    assert session.state is WSState.CLOSED and client.conn.closed
    assert host.received("websocket.connect") == {"filler": True}
    assert host.received("websocket.connect") is None
    assert host.received("websocket.disconnect") is None  # the consumer never heard of it


def test_an_open_socket_stuck_behind_a_full_channel_closes_1013(monkeypatch):
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = clocked_host(monkeypatch, layer, backpressure_timeout=3.0)
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="a")) + ws.send(TextMessage(data="b")))
    assert session.outbox.blocked and not client.conn.reading
    host.loop.advance(3.1)
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection)
    assert (close.code, close.reason) == (CloseReason.TRY_AGAIN_LATER, "try again later")
    assert session.state is WSState.CLOSED
    assert host.received("websocket.receive")["text"] == "a"  # "b" was dropped, not late


@pytest.mark.parametrize("error", ["too large", "broken"])
def test_a_layer_failing_on_the_retry_closes_the_socket(monkeypatch, caplog, error):
    from chanlite.layers.base import MessageTooLarge
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = clocked_host(monkeypatch, layer)
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="a")) + ws.send(TextMessage(data="b")))
    assert host.received("websocket.receive")["text"] == "a"  # room: a retry is scheduled

    def failing(channel, message):
        raise MessageTooLarge("over the limit") if error == "too large" else RuntimeError("boom")
    monkeypatch.setattr(layer, "send", failing)
    host.loop.run_ready()
    if error == "too large":
        [close] = frames(ws, client.written())
        assert isinstance(close, CloseConnection) and close.code == CloseReason.MESSAGE_TOO_BIG
        assert close.reason == "message too big for the channel layer"
        assert not client.conn.closed  # waiting for the client's close reply
    else:
        assert client.conn.closed and client.written() == b""  # aborted
        assert (f"cannot send websocket.receive for {session.reply_channel}: boom"
                in caplog.messages)


def test_timeouts_and_closes_are_logged_with_the_connection(host, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    client, session, connect = handshake(host)
    host.loop.advance(20.1)
    assert caplog.messages == ["WebSocket /ws/chat/ not accepted within 20.0s: rejecting with "
                               "403. Either no consumer in this test"]
    caplog.clear()
    client, session, ws = opened(host)
    host.loop.advance(15.0)  # ping, then no pong
    assert caplog.messages == [f"WebSocket {session.reply_channel}: no pong in time, closing 1011"]
    assert set(map(tuple, host.access_clients)) == {("10.0.0.1", 50000)}
    assert [line[0] for line in host.access_lines] == ["WSREJECT", "WSCONNECT", "WSDISCONNECT"]


def test_a_timer_callback_that_fails_closes_only_its_connection(caplog):
    class FailingHost(FakeHost):
        def connect_timeout_reason(self) -> str:
            raise RuntimeError("reason unavailable")
    host = FailingHost(**CONFIG)
    client, session, connect = handshake(host)
    host.loop.advance(20.1)  # does not raise out of the loop
    assert client.conn.closed
    # Aborted from outside the session: the consumer still hears 1006.
    assert host.received("websocket.disconnect")["code"] == CloseReason.ABNORMAL_CLOSURE
    assert any(m.startswith(f"error on connection {client.conn.id} ") for m in caplog.messages)


def test_a_protocol_error_from_the_client_closes_1002_at_once(host):
    client, session, ws = opened(host)
    client.send(b"\x81\x05hello")  # an unmasked frame: clients must mask
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.PROTOCOL_ERROR
    assert client.conn.closed and session.timers == {}  # no close handshake to wait for


def test_a_disconnect_the_layer_refuses_is_logged_and_the_socket_still_closes(monkeypatch, caplog):
    client, session, ws = opened(host := FakeHost(**CONFIG))

    def failing(channel, message):
        raise RuntimeError("layer down")
    monkeypatch.setattr(host.layer, "send", failing)
    client.send_eof()
    assert client.conn.closed and session.state is WSState.CLOSED
    assert caplog.messages == [f"cannot send websocket.disconnect for {session.reply_channel}"]


def test_closing_or_draining_a_closed_socket_does_nothing(host):
    client, session, ws = opened(host)
    client.send(ws.send(CloseConnection(code=1000)))
    client.written()
    session.drain()
    session.close()
    assert client.written() == b"" and session.state is WSState.CLOSED


def test_a_refused_origin_is_logged_even_without_an_origin_header(host, caplog):
    host.origin_ok = False
    client = host.connect()
    client.send(UPGRADE.replace(b"Origin: http://example.com\r\n", b""))
    assert client.written().startswith(b"HTTP/1.1 403 ")
    assert host.origins_checked == [(None, "/ws/chat/")]
    assert caplog.messages[0].startswith("WebSocket to /ws/chat/ rejected: origin  not allowed")


def test_frames_read_while_the_consumer_decides_wait_and_early_bytes_are_bounded(host):
    client, session, connect = handshake(host)
    early = WSClient(ConnectionType.CLIENT)
    client.send(early.send(TextMessage(data="early")))  # a read of its own, before the 101
    assert host.received("websocket.receive") is None and client.conn.reading
    assert host.reply(connect["reply_channel"], {"accept": True})
    assert host.received("websocket.receive")["text"] == "early"
    other, _, _ = handshake(host)
    other.send(b"x" * (64 * 1024))
    assert other.conn.reading  # 64 KiB early bytes: still reading (EOF is noticed)
    other.send(b"x")
    assert not other.conn.reading  # past the limit: TCP pushes back


def test_more_frames_than_one_parse_batch_in_one_read_all_arrive_in_order(host):
    client, session, ws = opened(host)
    client.send(b"".join(ws.send(TextMessage(data=str(i))) for i in range(40)))
    got = [host.received("websocket.receive") for _ in range(40)]
    assert [m["text"] for m in got] == [str(i) for i in range(40)]
    assert [m["order"] for m in got] == list(range(1, 41))
    assert session.state is WSState.OPEN and not client.conn.closed


def test_a_frame_the_layer_refuses_as_too_large_closes_1009(host, monkeypatch):
    from chanlite.layers.base import MessageTooLarge
    client, session, ws = opened(host)

    def too_large(channel, message):
        raise MessageTooLarge("the layer's own accounting says no")
    monkeypatch.setattr(host.layer, "send", too_large)
    client.send(ws.send(TextMessage(data="a")) + ws.send(TextMessage(data="b")))
    [close] = frames(ws, client.written())
    assert isinstance(close, CloseConnection) and close.code == CloseReason.MESSAGE_TOO_BIG
    assert close.reason == "message too big for the channel layer"
    assert session.state is WSState.CLOSED


def blocked_on_b(host: FakeHost):
    """An open socket whose ``websocket.receive`` (capacity 1) holds "a" while
    "b" waits in the outbox and reading is paused; returns (client, session, ws)."""
    client, session, ws = opened(host)
    client.send(ws.send(TextMessage(data="a")) + ws.send(TextMessage(data="b")))
    assert session.outbox.blocked and not client.conn.reading
    return client, session, ws


def test_bytes_read_after_back_pressure_paused_reading_wait_as_bytes_and_arrive_in_order():
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = FakeHost(layer=layer, backpressure_timeout=60.0, **CONFIG)
    client, session, ws = blocked_on_b(host)
    client.send_after_pause(ws.send(TextMessage(data="c")) + ws.send(TextMessage(data="d")))
    # Kept as bytes, not parsed: only "b" waits as a message, nothing went out.
    assert len(session.outbox.items) == 1 and not client.conn.reading
    assert session.state is WSState.OPEN and client.written() == b""
    got = [host.received("websocket.receive")]  # "a": room for "b"
    host.loop.run_ready()
    # "b" went out; "c" was parsed and waits for room again: still not reading.
    assert session.outbox.blocked and not client.conn.reading
    while session.outbox.blocked:
        got.append(host.received("websocket.receive"))
        host.loop.run_ready()
    got.append(host.received("websocket.receive"))
    assert host.received("websocket.receive") is None  # each once
    assert [(m["text"], m["order"]) for m in got] == [("a", 1), ("b", 2), ("c", 3), ("d", 4)]
    assert client.conn.reading  # everything out: reading again
    client.send(ws.send(TextMessage(data="e")))
    assert host.received("websocket.receive")["text"] == "e"


def test_a_full_channel_holds_at_most_one_parse_batch_as_messages():
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = FakeHost(layer=layer, backpressure_timeout=60.0, **CONFIG)
    client, session, ws = opened(host)
    client.send(b"".join(ws.send(TextMessage(data=str(i))) for i in range(40)))
    # "0" is on the layer; "1".."31" (the rest of the first batch of 32) wait
    # in the outbox; the last 8 frames stay unparsed bytes.
    assert len(session.outbox.items) == 31 and not client.conn.reading
    got = []
    while session.outbox.blocked:
        got.append(host.received("websocket.receive"))
        host.loop.run_ready()
        assert len(session.outbox.items) <= 32
    got.append(host.received("websocket.receive"))
    assert [m["text"] for m in got] == [str(i) for i in range(40)]
    assert [m["order"] for m in got] == list(range(1, 41))
    assert client.conn.reading


def test_the_close_reply_is_read_while_back_pressure_blocks(monkeypatch):
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    host = FakeHost(layer=layer, backpressure_timeout=60.0, **CONFIG)
    client, session, ws = blocked_on_b(host)
    session.drain()  # close 1001: reading resumes for the client's reply
    [close] = frames(ws, client.written())
    assert close.code == CloseReason.GOING_AWAY and client.conn.reading
    assert session.outbox.blocked  # "b" and the disconnect still wait
    client.send(ws.send(close.response()))
    assert client.conn.closed and session.timers == {}  # at once, not at the close timeout


def test_bytes_arriving_after_a_refusal_are_ignored_and_the_403_still_goes_out(host, caplog):
    client, session, connect = handshake(host)
    client.sock.accept = 0  # a client not reading: the 403 stays in our buffer
    assert host.reply(connect["reply_channel"], {"accept": False})
    assert not client.conn.closed and not client.conn.reading
    client.send_after_pause(b"\x81\x85 bytes after the refusal")
    assert caplog.messages == [] and not client.conn.closed
    client.sock.accept = 1 << 30
    client.conn.on_ready(selectors.EVENT_WRITE)
    assert client.written().startswith(b"HTTP/1.1 403 ") and client.conn.closed


def test_a_layer_failing_on_the_frames_read_before_the_101_closes_that_connection(
        host, monkeypatch, caplog):
    client, session, connect = handshake(host)
    early = WSClient(ConnectionType.CLIENT)
    client.send(early.send(TextMessage(data="early")))

    def failing(channel, message):
        raise RuntimeError("layer down")
    monkeypatch.setattr(host.layer, "send", failing)
    assert host.reply(connect["reply_channel"], {"accept": True})  # does not raise
    assert client.conn.closed and session.state is WSState.CLOSED
    assert any(m.startswith(f"error on connection {client.conn.id} ") for m in caplog.messages)
