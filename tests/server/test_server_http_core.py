"""The HTTP protocol core, driven with bytes only (no sockets)."""

from __future__ import annotations

import h11
import pytest

from chanlite.server.http import (
    Body,
    Disconnected,
    EndOfBody,
    HTTPCore,
    Reject,
    RequestHead,
    asgi_request,
    wsgi_path,
)


def drain(core: HTTPCore) -> list:
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
        if isinstance(event, (Reject, Disconnected)):
            break
    return events


def parse_response(data: bytes, method: bytes = b"GET") -> list:
    """Parse server bytes with an h11 client; return [(status, headers, body)]."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    out, status, headers, body = [], None, None, b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        if isinstance(event, h11.Response):
            status, headers, body = event.status_code, dict(event.headers), b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, headers, body))
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                break
            client.start_next_cycle()
            client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"x")]))
            client.send(h11.EndOfMessage())
    return out


def test_simple_get_becomes_head_and_end():
    core = HTTPCore()
    core.receive(b"GET /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
    head, end = drain(core)
    assert isinstance(head, RequestHead) and isinstance(end, EndOfBody)
    assert head.method == "GET" and head.path == "/a b/c"
    assert head.query_string == b"x=1&y=%20" and head.http_version == "1.1"
    assert head.headers == [(b"host", b"h"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert not head.websocket
    message = asgi_request(head, "r!1", b"", ["1.2.3.4", 5], ["h", 80])
    assert message["headers"][1:] == [[b"x-a", b"1"], [b"x-a", b"2"]]
    assert message["path"] == "/a b/c" and message["body"] == b""
    assert "body_channel" not in message
    assert wsgi_path(head) == "/a b/c"


def test_utf8_path_is_decoded():
    core = HTTPCore()
    core.receive(b"GET /caf%C3%A9 HTTP/1.1\r\nHost: h\r\n\r\n")
    head = drain(core)[0]
    assert head.path == "/café"
    assert wsgi_path(head) == "/caf\xc3\xa9"  # WSGI: bytes as latin-1


def test_keep_alive_and_pipelining_answer_in_order():
    core = HTTPCore()
    core.receive(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    wire = b""
    seen = []
    for _ in range(3):
        events = drain(core)
        head = events[0]
        body = b"".join(e.data for e in events if isinstance(e, Body))
        assert isinstance(events[-1], EndOfBody)
        seen.append((head.path, body))
        # Nothing of the next request is visible before this one is answered.
        assert core.next_event() is None
        wire += core.response_start(200, [(b"x-path", head.path.encode())], head.path.encode())
        assert core.finish() is True
    assert seen == [("/1", b""), ("/2", b"abc"), ("/3", b"")]
    responses = parse_response(wire)
    assert [r[2] for r in responses] == [b"/1", b"/2", b"/3"]
    # A complete body gets a Content-Length, not chunking.
    assert responses[0][1][b"content-length"] == b"2"


def test_chunked_request_body_is_dechunked():
    core = HTTPCore()
    core.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    core.receive(b"5\r\nhello\r\n")
    events = drain(core)
    assert isinstance(events[0], RequestHead) and events[1] == Body(b"hello")
    core.receive(b"6\r\n world\r\n0\r\n\r\n")
    assert drain(core) == [Body(b" world"), EndOfBody()]


def test_expect_100_continue_only_when_waiting():
    core = HTTPCore()
    core.receive(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert isinstance(drain(core)[0], RequestHead)
    assert core.continue_100().startswith(b"HTTP/1.1 100 ")
    core.receive(b"ok")
    assert drain(core) == [Body(b"ok"), EndOfBody()]
    assert core.continue_100() == b""


def test_streamed_response_is_chunked_for_http11():
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    wire = core.response_start(200, [], b"a", more=True)
    wire += core.response_body(b"b", more=True) + core.response_body(b"c")
    assert b"transfer-encoding: chunked" in wire.lower()
    assert parse_response(wire)[0][2] == b"abc"
    assert core.finish()


def test_http10_is_closed_after_response():
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.0\r\n\r\n")
    head = drain(core)[0]
    assert head.http_version == "1.0"
    wire = core.response_start(200, [], b"x", more=True) + core.response_body(b"")
    assert b"chunked" not in wire
    assert core.finish() is False


def test_head_response_has_no_body():
    core = HTTPCore()
    core.receive(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    wire = core.response_start(200, [(b"content-length", b"5")], b"hello")
    assert wire.endswith(b"\r\n\r\n") and b"hello" not in wire
    assert core.finish()


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"a" * 70000, 431),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999\r\n\r\n", 413),
    ],
)
def test_bad_requests_are_rejected_with_status(data, status):
    core = HTTPCore(max_header_size=65536, max_request_body=1000)
    core.receive(data)
    events = drain(core)
    reject = events[-1]
    assert isinstance(reject, Reject), events
    assert reject.status == status
    assert reject.data.startswith(b"HTTP/1.1 %d " % status)
    assert b"connection: close" in reject.data
    assert core.finish() is False


def test_chunked_body_over_limit_is_413():
    core = HTTPCore(max_request_body=8)
    core.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    core.receive(b"5\r\nhello\r\n5\r\nworld\r\n")
    events = drain(core)
    assert events[1] == Body(b"hello")
    assert isinstance(events[-1], Reject) and events[-1].status == 413


def test_eof_while_request_in_flight_is_disconnected():
    # How a parked long-poll learns that its client left (http.disconnect).
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    core.receive(b"")
    assert isinstance(core.next_event(), Disconnected)


def test_eof_between_requests_is_disconnected():
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    core.response_start(200, [], b"")
    assert core.finish() is True
    core.receive(b"")
    assert isinstance(core.next_event(), Disconnected)


def test_eof_mid_body_is_disconnected_or_rejected():
    core = HTTPCore()
    core.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    core.receive(b"")
    events = drain(core)
    assert isinstance(events[-1], (Disconnected, Reject))


WS_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://h\r\n\r\n"
)


def test_websocket_upgrade_accept_returns_trailing_frames():
    core = HTTPCore()
    core.receive(WS_REQUEST + b"\x81\x80xxxx")
    head = drain(core)[0]
    assert head.websocket and head.path == "/chat" and head.query_string == b"room=1"
    wire, trailing = core.accept_websocket()
    assert wire.startswith(b"HTTP/1.1 101 ")
    # RFC 6455's example key/accept pair.
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in wire
    assert trailing == b"\x81\x80xxxx"


def test_websocket_reject_is_403_and_closes():
    core = HTTPCore()
    core.receive(WS_REQUEST)
    drain(core)
    wire = core.reject_websocket(403)
    assert wire.startswith(b"HTTP/1.1 403 ")
    assert core.finish() is False


@pytest.mark.parametrize(
    "old, new",
    [
        (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Key: short"),
        (b"Connection: keep-alive, Upgrade", b"Connection: keep-alive"),
    ],
)
def test_bad_websocket_handshake_is_400(old, new):
    core = HTTPCore()
    core.receive(WS_REQUEST.replace(old, new))
    events = drain(core)
    assert isinstance(events[-1], Reject) and events[-1].status == 400


def test_invalid_response_header_raises_before_bytes():
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    with pytest.raises(h11.LocalProtocolError):
        core.response_start(200, [(b"x-bad", b"a\r\nb")], b"")


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses_drop_a_body(status):
    core = HTTPCore()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    wire = core.response_start(status, [], b"ignored", more=True) + core.response_body(b"more")
    assert b"ignored" not in wire and b"more" not in wire
    assert core.finish()
    core.receive(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    drain(core)
    wire = core.response_start(status, [], b"ignored")
    assert b"ignored" not in wire and b"content-length" not in wire.lower()
    assert core.finish()
