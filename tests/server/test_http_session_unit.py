"""HTTPSession, driven without sockets: request bytes and replies in; response
bytes, layer messages, WSGI hand-overs and timers out (see tests/server/fakes.py)."""

from __future__ import annotations

import types

import h11
import pytest

from chanlite.server import http_session

from .fakes import FakeHost

CONFIG = dict(header_timeout=10.0, keepalive_timeout=30.0, http_response_timeout=60.0,
              body_idle_timeout=5.0, body_timeout=100.0)


def responses(data: bytes) -> list:
    """Parse what the server wrote with an h11 client (one GET per response)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    events = []
    while True:
        event = client.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED):
            return events
        events.append(event)
        if type(event) is h11.EndOfMessage:
            return events


def status_and_body(data: bytes) -> tuple[int, bytes]:
    events = responses(data)
    return events[0].status_code, b"".join(e.data for e in events if type(e) is h11.Data)


@pytest.fixture
def host(monkeypatch) -> FakeHost:
    host = FakeHost(**CONFIG)
    # The session reads the clock for its deadlines: the fake loop's clock.
    monkeypatch.setattr(http_session, "time", types.SimpleNamespace(monotonic=host.loop.time))
    host.http_paths.add("/chan/")
    return host


def test_a_routed_request_goes_to_the_layer_and_its_reply_is_written(host):
    client = host.connect()
    client.send(b"GET /chan/?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    request = host.received("http.request")
    assert (request["path"], request["query_string"]) == ("/chan/", b"q=1")
    channel = request["reply_channel"]
    assert channel.startswith(host.replies.prefix) and channel in host.replies
    assert client.written() == b""
    assert host.reply(channel, {"status": 200, "headers": [[b"content-type", b"text/plain"]],
                                "content": b"hello"})
    assert status_and_body(client.written()) == (200, b"hello")
    assert channel not in host.replies  # answered: forgotten (one rule)
    assert ("GET", "/chan/", 200, 5) in host.access_lines
    assert not client.conn.closed  # keep-alive


def test_a_streamed_reply_is_written_as_it_comes(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 200, "content": b"a", "more_content": True})
    assert channel in host.replies
    host.reply(channel, {"content": b"b", "more_content": False})
    assert status_and_body(client.written()) == (200, b"ab")
    assert channel not in host.replies


def test_no_reply_in_time_is_answered_504(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.loop.advance(59.0)
    assert client.written() == b""
    host.loop.advance(1.5)
    assert status_and_body(client.written())[0] == 504
    assert channel not in host.replies


def test_a_client_leaving_tells_the_consumer_http_disconnect(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    client.send_eof()
    assert host.received("http.disconnect") == {"reply_channel": channel, "path": "/chan/"}
    assert client.conn.closed and channel not in host.replies


def test_an_answered_request_still_hears_disconnect_when_the_connection_closes(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 204})
    assert host.received("http.disconnect") is None
    client.send_eof()
    assert host.received("http.disconnect") == {"reply_channel": channel, "path": "/chan/"}


def test_other_paths_go_to_wsgi_and_its_response_is_written_on_the_loop(host):
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    [(session, head, body)] = host.wsgi_jobs
    assert (head.method, head.path, body.size) == ("POST", "/view/", 3)
    assert host.received("http.request") is None
    session.wsgi_start("201 Created", [(b"content-type", b"text/plain")], b"made", False)
    assert status_and_body(client.written()) == (201, b"made")
    assert ("POST", "/view/", 201, 4) in host.access_lines


def test_a_stalled_wsgi_stream_is_dropped_by_the_loop_not_the_pool_thread(host):
    client = host.connect()
    client.send(b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n")
    [(session, _, _)] = host.wsgi_jobs
    session.wsgi_start(200, [], b"part", True)
    assert not session.gone
    session.wsgi_stalled()  # what the pool thread hands over after _DRAIN_WAIT
    assert client.conn.closed and session.gone


def test_headers_not_finished_in_time_get_408(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHo")
    host.loop.advance(9.0)
    assert client.written() == b""
    host.loop.advance(1.5)
    assert status_and_body(client.written())[0] == 408
    assert client.conn.closed


def test_a_silent_connection_closes_without_a_response(host):
    client = host.connect()
    host.loop.advance(10.5)
    assert client.conn.closed and client.written() == b""


def test_a_body_that_stops_coming_gets_408(host):
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    host.loop.advance(5.5)
    assert status_and_body(client.written())[0] == 408
    assert host.wsgi_jobs == []


def test_drain_closes_idle_keepalive_but_lets_a_request_finish(host):
    idle, busy = host.connect(), host.connect()
    busy.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.draining = True
    idle.session.drain()
    busy.session.drain()
    assert idle.conn.closed and not busy.conn.closed
    host.reply(channel, {"status": 200, "content": b"done"})
    assert status_and_body(busy.written()) == (200, b"done")
    assert busy.conn.closed  # no keep-alive while draining


def test_an_upgrade_hands_the_connection_to_a_websocket_session(host):
    from chanlite.server.ws_session import WebSocketSession

    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 204})
    client.written()
    client.send(b"GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert isinstance(client.session, WebSocketSession)
    # The HTTP part ended: its answered consumer request hears http.disconnect.
    assert host.received("http.disconnect") == {"reply_channel": channel, "path": "/chan/"}
    assert host.received("websocket.connect")["path"] == "/ws/"


# --- Bodies, invalid replies and limits (pinned by mutation testing, #20)


def test_a_small_body_rides_on_the_request_with_the_connection_details(host):
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    request = host.received("http.request")
    assert (request["method"], request["body"]) == ("POST", b"abc")
    assert "body_channel" not in request
    assert request["client"] == ["10.0.0.1", 50000] and request["server"] == ["127.0.0.1", 8000]
    assert (request["root_path"], request["scheme"]) == ("", "http")
    assert host.body_memory.used == 0  # nothing held once sent


def test_a_large_body_streams_on_a_body_channel_then_waits_for_the_response(monkeypatch):
    host = FakeHost(body_chunk_size=4, **CONFIG)
    monkeypatch.setattr(http_session, "time", types.SimpleNamespace(monotonic=host.loop.time))
    host.http_paths.add("/chan/")
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcd")
    request = host.received("http.request")
    assert request["body"] == b"abcd" and request["body_channel"].startswith("http.request.body?")
    client.send(b"efgh")
    client.send(b"ij")
    chunks = [host.received(request["body_channel"]) for _ in range(2)]
    assert chunks == [{"content": b"efgh", "closed": False, "more_content": True},
                      {"content": b"ij", "closed": False, "more_content": False}]
    assert host.body_memory.used == 0
    host.loop.advance(59.0)
    assert client.written() == b""
    host.loop.advance(2.0)  # http_response_timeout counts from the end of the body
    assert status_and_body(client.written())[0] == 504


def test_an_invalid_response_gets_500_and_the_connection_closes(host, caplog):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    assert host.reply(channel, {"status": "200", "content": b"x"})
    assert status_and_body(client.written()) == (500, b"invalid response from the consumer\n")
    assert client.conn.closed
    assert f"invalid http.response on {channel}: 'status' must be an int" in caplog.text
    assert "(message keys: ['content', 'status'])" in caplog.text


def test_an_invalid_chunk_after_the_status_aborts_the_connection(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 200, "content": b"a", "more_content": True})
    client.written()
    host.reply(channel, {"content": "not bytes"})
    assert client.conn.closed and client.written() == b""
    assert channel not in host.replies


def test_a_chunk_without_more_content_ends_the_response(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 200, "more_content": True})
    host.reply(channel, {"content": b"ab", "more_content": True})
    host.reply(channel, {"content": b"cd"})
    assert status_and_body(client.written()) == (200, b"abcd")
    assert ("GET", "/chan/", 200, 4) in host.access_lines
    assert not client.conn.closed


def test_a_request_too_large_for_the_layer_gets_431(monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = FakeHost(layer=InMemoryChannelLayer(max_message_size=400), **CONFIG)
    host.http_paths.add("/chan/")
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 500 + b"\r\n\r\n")
    assert status_and_body(client.written()) == (431, b"request too large for the channel layer\n")
    assert client.conn.closed and host.received("http.request") is None
    assert "http.request for /chan/ too large for the layer: " in caplog.text


def streaming_host(monkeypatch, **config) -> FakeHost:
    """A host whose session and back-pressure read the fake clock; /chan/ is routed."""
    from chanlite.server import backpressure
    host = FakeHost(**{**CONFIG, "body_chunk_size": 4, **config})
    clock = types.SimpleNamespace(monotonic=host.loop.time)
    monkeypatch.setattr(http_session, "time", clock)
    monkeypatch.setattr(backpressure, "time", clock)
    host.http_paths.add("/chan/")
    return host


def test_a_body_past_body_timeout_gets_408_and_the_consumer_hears_it_end(monkeypatch, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    host = streaming_host(monkeypatch, body_timeout=12.0)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabcd")
    request = host.received("http.request")
    for _ in range(2):
        host.loop.advance(4.0)
        client.send(b"efgh")  # never idle for body_idle_timeout (5 s) ...
    assert host.received(request["body_channel"])["more_content"] is True
    host.loop.advance(3.9)
    assert client.written() == b""
    host.loop.advance(0.2)  # ... but not complete 12 s after the head
    assert status_and_body(client.written()) == (
        408, b"408 Request Timeout\nrequest body too slow\n")
    assert client.conn.closed
    assert ("POST /chan/ from ['10.0.0.1', 50000]: request body not complete within 12.0s; "
            "answering 408") in caplog.messages
    assert host.received("http.disconnect") == {"reply_channel": request["reply_channel"],
                                                "path": "/chan/"}
    chunks = [host.received(request["body_channel"]) for _ in range(2)]
    assert chunks[-1] == {"content": b"", "closed": True, "more_content": False}


def test_a_body_that_pauses_past_body_idle_timeout_says_so(monkeypatch, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    host = streaming_host(monkeypatch)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    host.loop.advance(5.1)
    assert status_and_body(client.written())[0] == 408
    assert any(m.endswith(": no request body bytes for 5.0s; answering 408")
               for m in caplog.messages)


def test_headers_too_slow_are_logged_with_the_client(host, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n")
    host.loop.advance(10.1)
    assert status_and_body(client.written())[0] == 408 and client.conn.closed
    assert (f"connection {client.conn.id} from 10.0.0.1:50000: headers not complete after "
            "10.0s; closing") in caplog.messages


def test_a_request_stuck_behind_a_full_channel_gets_503_with_retry_after(monkeypatch):
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={"http.request": 1})
    layer.send("http.request", {"filler": True})
    host = streaming_host(monkeypatch, layer=layer, backpressure_timeout=3.0)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.written() == b"" and not client.conn.reading  # waiting for room
    host.loop.advance(3.1)
    events = responses(client.written())
    assert events[0].status_code == 503
    assert (b"retry-after", b"3") in events[0].headers
    assert b"".join(e.data for e in events if type(e) is h11.Data) == b"server busy, try again\n"
    assert client.conn.closed
    assert host.received("http.request") == {"filler": True}
    assert host.received("http.request") is None  # the abandoned request never went out


def test_a_layer_failing_on_the_retry_answers_503(monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={"http.request": 1})
    layer.send("http.request", {"filler": True})
    host = streaming_host(monkeypatch, layer=layer)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")

    def broken(channel, message):
        raise RuntimeError("layer broke")
    monkeypatch.setattr(layer, "send", broken)
    assert host.received("http.request") == {"filler": True}  # room: the retry is scheduled
    host.loop.run_ready()
    assert status_and_body(client.written()) == (503, b"server busy\n")
    assert client.conn.closed
    assert "cannot send http.request for /chan/: layer broke" in caplog.messages


# --- A streamed WSGI body, as the pool thread hands it to the loop (http_wsgi.py)


def wsgi_request(host, request=b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n"):
    client = host.connect()
    client.send(request)
    [(session, _, _)] = host.wsgi_jobs
    return client, session


def test_a_wsgi_body_streamed_in_several_writes_arrives_whole(host):
    import threading
    client, session = wsgi_request(host)
    session.wsgi_start("200 OK", [(b"content-type", b"text/plain")], b"a", True)
    waits = [threading.Event(), threading.Event()]
    session.wsgi_body(b"bc", True, waits[0])
    session.wsgi_body(b"", True, waits[1])
    assert all(w.is_set() for w in waits)  # the socket took everything: no wait
    assert not client.conn.closed and ("GET", "/view/", 200, 3) not in host.access_lines
    session.wsgi_body(b"de", False)
    assert status_and_body(client.written()) == (200, b"abcde")
    assert ("GET", "/view/", 200, 5) in host.access_lines
    assert not client.conn.closed  # keep-alive: the next request can come


def test_a_wsgi_stream_waits_for_a_slow_client_to_drain_the_buffer(host):
    import selectors
    import threading
    client, session = wsgi_request(host)
    client.sock.accept = 16  # the client reads 16 bytes per write
    session.wsgi_start(200, [], b"", True)
    drained = threading.Event()
    session.wsgi_body(b"x" * 100, True, drained)
    assert not drained.is_set() and client.conn.buffered  # the pool thread waits
    for _ in range(20):
        if drained.is_set():
            break
        client.conn.on_ready(selectors.EVENT_WRITE)
    assert drained.is_set() and not client.conn.buffered
    again = threading.Event()
    session.wsgi_body(b"y", True, again)
    client.conn.on_ready(selectors.EVENT_WRITE)
    assert again.is_set()
    # The last part, with no thread waiting: the buffer drains again, no wake-up due.
    session.wsgi_body(b"z" * 50, False)
    for _ in range(20):
        if not client.conn.buffered:
            break
        client.conn.on_ready(selectors.EVENT_WRITE)
    assert status_and_body(client.written())[1] == b"x" * 100 + b"y" + b"z" * 50
    assert not client.conn.closed and ("GET", "/view/", 200, 151) in host.access_lines


def test_a_wsgi_body_for_a_client_that_left_is_dropped_and_frees_the_thread(host):
    import threading
    client, session = wsgi_request(host)
    session.wsgi_start(200, [], b"part", True)
    client.written()
    client.conn.abort()  # the client is gone
    drained = threading.Event()
    session.wsgi_body(b"more", True, drained)
    assert drained.is_set() and client.written() == b""
    session.wsgi_failed()  # nothing to answer any more
    assert client.written() == b""


def test_a_wsgi_body_longer_than_its_content_length_aborts_and_is_logged(host, caplog):
    import threading
    client, session = wsgi_request(host)
    session.wsgi_start(200, [(b"content-length", b"2")], b"ab", True)
    drained = threading.Event()
    session.wsgi_body(b"extra", True, drained)
    assert client.conn.closed and drained.is_set()
    assert caplog.messages == [
        "invalid WSGI body for /view/: Too much data for declared Content-Length"]


def test_a_full_wsgi_queue_answers_503_with_retry_after(host):
    host.wsgi_room = False
    client = host.connect()
    client.send(b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n")
    events = responses(client.written())
    assert events[0].status_code == 503 and (b"retry-after", b"1") in events[0].headers
    assert b"".join(e.data for e in events if type(e) is h11.Data) == b"server busy, try again\n"
    assert ("LIMIT", f"{host.config.max_queued_requests} WSGI requests wait for a thread "
            "(max_queued_requests): answering 503") in host.access_lines
    assert not client.conn.closed  # the client may try again on this connection


def test_a_body_that_cannot_be_spooled_answers_503_and_closes(host, monkeypatch, caplog):
    from chanlite.server.bodies import SpooledBody

    def disk_full(self, data):
        raise OSError("disk full")
    monkeypatch.setattr(SpooledBody, "write", disk_full)
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert status_and_body(client.written()) == (503, b"server busy, try again\n")
    assert client.conn.closed and host.wsgi_jobs == []
    assert caplog.messages == ["cannot spool the body of POST /view/ to disk (disk full): "
                               "answering 503"]


def test_a_body_chunk_too_large_for_the_layer_answers_503(monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = streaming_host(monkeypatch, layer=InMemoryChannelLayer(max_message_size=300))
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabcd")
    request = host.received("http.request")
    client.send(b"y" * 400)
    assert status_and_body(client.written()) == (503, b"server busy\n")
    assert client.conn.closed
    [message] = caplog.messages
    assert message.startswith(f"cannot stream request body on {request['body_channel']}: ")


def test_a_body_in_several_reads_is_joined_in_order(host):
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
    client.send(b"cd")
    client.send(b"ef")
    request = host.received("http.request")
    assert request["body"] == b"abcdef" and "body_channel" not in request
    assert host.body_memory.used == 0
