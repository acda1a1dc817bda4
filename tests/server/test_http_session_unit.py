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
    host = full_channel_host(monkeypatch, backpressure_timeout=3.0)
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
    host = full_channel_host(monkeypatch)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")

    def broken(channel, message):
        raise RuntimeError("layer broke")
    monkeypatch.setattr(host.layer, "send", broken)
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
    # The consumer reading the body hears at once that the rest will not come.
    assert host.received(request["body_channel"]) == {
        "content": b"", "closed": True, "more_content": False}


def test_a_body_in_several_reads_is_joined_in_order(host):
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
    client.send(b"cd")
    client.send(b"ef")
    request = host.received("http.request")
    assert request["body"] == b"abcdef" and "body_channel" not in request
    assert host.body_memory.used == 0


# --- Timers, log lines, keep-alive and pipelining (the survivors of #20's fourth round)


def test_the_header_timeout_408_says_the_headers_took_too_long(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHo")
    host.loop.advance(10.1)
    assert status_and_body(client.written()) == (
        408, b"408 Request Timeout\nrequest headers took too long\n")


def test_the_504_is_plain_text_logged_and_in_the_access_log(host, caplog):
    client = host.connect()
    host.loop.advance(2.0)
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.loop.advance(60.1)
    events = responses(client.written())
    assert events[0].status_code == 504
    assert (b"content-type", b"text/plain") in events[0].headers
    body = b"no response from the consumer in time\n"
    assert b"".join(e.data for e in events if type(e) is h11.Data) == body
    assert caplog.messages == [
        f"no http.response on {channel} for GET /chan/ within 60.0s: answering 504"]
    assert host.access_lines == [("GET", "/chan/", 504, len(body))]
    assert host.access_details == [(["10.0.0.1", 50000], 2.0)]  # started when the head came


def test_a_rejected_request_is_logged_with_the_client_status_and_reason(monkeypatch, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    host = streaming_host(monkeypatch, max_request_body=10)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"8\r\nabcdefgh\r\n8\r\nijklmnop\r\n")
    status, body = status_and_body(client.written())
    assert status == 413 and body.endswith(b"\nrequest body above the 10-byte limit\n")
    assert client.conn.closed
    assert caplog.messages == [
        "bad request from 10.0.0.1:50000: 413 request body above the 10-byte limit"]


def test_a_malformed_request_gets_400_and_closes(host, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nno colon here\r\n\r\n")
    assert status_and_body(client.written())[0] == 400
    assert client.conn.closed and host.received("http.request") is None
    [message] = caplog.messages
    assert message.startswith("bad request from 10.0.0.1:50000: 400 ")


def test_request_headers_above_max_header_size_get_431(monkeypatch):
    host = streaming_host(monkeypatch, max_header_size=1024)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 2000 + b"\r\n\r\n")
    assert status_and_body(client.written())[0] == 431
    assert client.conn.closed and host.received("http.request") is None


def test_the_body_timeout_408_is_logged_as_a_bad_request(monkeypatch, caplog):
    caplog.set_level("INFO", logger="chanlite.server")
    host = streaming_host(monkeypatch, body_timeout=12.0)
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    for _ in range(3):
        host.loop.advance(4.0)
        client.send(b"cd")
    host.loop.advance(0.1)
    assert status_and_body(client.written())[0] == 408
    assert caplog.messages[-1] == (
        "bad request from 10.0.0.1:50000: 408 request body not complete within 12.0s")


def test_body_timeout_alone_applies_when_body_idle_timeout_is_off(monkeypatch):
    host = streaming_host(monkeypatch, body_idle_timeout=0.0, body_timeout=12.0)
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    host.loop.advance(11.9)
    assert client.written() == b""
    host.loop.advance(0.2)
    assert status_and_body(client.written())[0] == 408


def test_a_body_timer_rearmed_with_under_a_second_left_fires_at_body_timeout(monkeypatch):
    host = streaming_host(monkeypatch, body_timeout=12.0)
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    for at in (4.0, 4.0, 3.5):  # bytes at 4, 8 and 11.5 s: never idle for 5 s
        host.loop.advance(at)
        client.send(b"cd")
    host.loop.advance(0.6)  # 12.1 s
    assert status_and_body(client.written())[0] == 408


@pytest.mark.parametrize(("body_timeout", "last_bytes_at", "said"), [
    (12.0, 6.5, "no request body bytes for 5.0s"),  # idle fires at 11.5: 0.5 s early
    (12.001, 7.0, "request body not complete within 12.001s"),  # idle fires 1 ms early
])
def test_the_408_blames_body_timeout_only_within_1_ms_of_it(monkeypatch, caplog, body_timeout,
                                                             last_bytes_at, said):
    caplog.set_level("INFO", logger="chanlite.server")
    host = streaming_host(monkeypatch, body_timeout=body_timeout)
    assert last_bytes_at + 5.0 == body_timeout - 0.001 or body_timeout == 12.0  # exact floats
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    host.loop.advance(4.0)
    client.send(b"cd")
    host.loop.advance(last_bytes_at - 4.0)
    client.send(b"ef")
    host.loop.advance(5.0)
    assert status_and_body(client.written())[0] == 408
    assert f"POST /view/ from ['10.0.0.1', 50000]: {said}; answering 408" in caplog.messages


def test_a_chunked_body_that_stops_coming_gets_408(host):
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n")
    host.loop.advance(4.9)
    assert client.written() == b""
    host.loop.advance(0.2)
    assert status_and_body(client.written())[0] == 408
    assert host.wsgi_jobs == []


def test_a_client_expecting_100_continue_gets_it_before_sending_its_body(host):
    client = host.connect()
    client.send(b"POST /view/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Expect: 100-continue\r\n\r\n")
    assert client.written() == b"HTTP/1.1 100 \r\n\r\n"
    client.send(b"abc")
    [(_, head, body)] = host.wsgi_jobs
    assert body.size == 3


def test_body_chunks_are_cut_at_body_chunk_size_from_the_bytes_held(monkeypatch):
    host = streaming_host(monkeypatch)  # body_chunk_size=4
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nab")
    assert host.received("http.request") is None  # 2 bytes held
    client.send(b"cd")
    request = host.received("http.request")
    assert request["body"] == b"abcd"  # the reads joined, no separator
    for data in (b"efg", b"hij", b"kl"):
        client.send(data)
    chunks = [host.received(request["body_channel"]) for _ in range(3)]
    assert chunks == [{"content": b"efghij", "closed": False, "more_content": True},
                      {"content": b"kl", "closed": False, "more_content": False}, None]


def test_a_body_one_byte_under_body_chunk_size_rides_on_the_request(monkeypatch):
    host = streaming_host(monkeypatch)  # body_chunk_size=4
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    request = host.received("http.request")
    assert request["body"] == b"abc" and "body_channel" not in request


def test_body_memory_is_all_given_back_after_the_response(host):
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 204})
    assert not client.conn.closed and host.body_memory.used == 0


def test_body_bytes_held_are_given_back_when_the_client_leaves_mid_body(host):
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert host.body_memory.used == 3
    client.conn.abort()
    assert host.body_memory.used == 0


def test_the_request_scheme_comes_from_a_trusted_proxy(monkeypatch):
    host = streaming_host(monkeypatch, proxy_headers=True, trusted_proxies=["10.0.0.1"])
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n")
    assert host.received("http.request")["scheme"] == "https"


def test_a_request_too_large_for_the_layer_logs_the_layers_reason(monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = streaming_host(monkeypatch, layer=InMemoryChannelLayer(max_message_size=400))
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 500 + b"\r\n\r\n")
    assert status_and_body(client.written())[0] == 431
    [message] = caplog.messages
    assert message.startswith("http.request for /chan/ too large for the layer: message is ")
    assert message.endswith(" bytes encoded, above max_message_size=400; send large payloads "
                            "in chunks or raise max_message_size in the layer CONFIG")


def test_a_body_chunk_too_large_logs_the_layers_reason(monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = streaming_host(monkeypatch, layer=InMemoryChannelLayer(max_message_size=300))
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabcd")
    client.send(b"y" * 400)
    [message] = caplog.messages
    assert message.endswith(" bytes encoded, above max_message_size=300; send large payloads "
                            "in chunks or raise max_message_size in the layer CONFIG")


def full_channel_host(monkeypatch, channel="http.request", **config):
    """A host whose ``channel`` holds one message and is full."""
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={channel: 1})
    layer.send(channel, {"filler": True})
    return streaming_host(monkeypatch, layer=layer, **config)


def test_reading_resumes_once_the_full_channel_has_room(monkeypatch):
    host = full_channel_host(monkeypatch)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not client.conn.reading
    assert host.received("http.request") == {"filler": True}
    host.loop.run_ready()  # the retry
    assert host.received("http.request")["path"] == "/chan/"
    assert client.conn.reading and not client.conn.closed


def test_a_closing_connection_does_not_resume_reading_when_the_layer_unblocks(host):
    client = host.connect()
    client.sock.accept = 4  # the client reads slowly: the 503 stays buffered
    client.send(b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n")
    [(session, _, _)] = host.wsgi_jobs
    session.wsgi_start(503, [(b"connection", b"close")], b"busy", False)
    assert client.conn.closing and not client.conn.closed and not client.conn.reading
    session.layer_unblocked()
    assert not client.conn.reading


def test_retry_after_is_at_least_one_second(monkeypatch):
    host = full_channel_host(monkeypatch, backpressure_timeout=1.0)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    host.loop.advance(1.1)
    events = responses(client.written())
    assert events[0].status_code == 503 and (b"retry-after", b"1") in events[0].headers


def test_a_request_that_never_reached_the_layer_gets_no_http_disconnect(monkeypatch):
    host = full_channel_host(monkeypatch)
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    client.conn.abort()
    assert host.received("http.request") == {"filler": True}
    host.loop.run_ready()
    assert host.received("http.request") is None  # discarded, not sent late
    assert host.received("http.disconnect") is None


def test_a_half_closed_client_still_gets_its_wsgi_response_then_the_connection_closes(host):
    client = host.connect()
    client.send(b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n")
    client.send_eof()  # printf 'GET ...' | nc
    assert not client.conn.closed
    [(session, _, _)] = host.wsgi_jobs
    session.wsgi_start(200, [], b"ok", False)
    events = responses(client.written())
    assert events[0].status_code == 200 and (b"connection", b"close") in events[0].headers
    assert client.conn.closed


def test_an_idle_keep_alive_connection_closes_quietly_on_eof(host, caplog):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 204})
    client.written()
    client.send_eof()
    assert client.conn.closed and client.written() == b""
    assert caplog.messages == []


def test_a_fresh_connection_closes_quietly_on_eof(host, caplog):
    client = host.connect()
    client.send_eof()
    assert client.conn.closed and client.written() == b"" and caplog.messages == []


def answer(host, status=204):
    """Answer the next ``http.request`` on the layer; its reply channel."""
    channel = host.received("http.request")["reply_channel"]
    assert host.reply(channel, {"status": status})
    return channel


def test_keep_alive_connection_serves_a_second_request_after_the_first_response(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    answer(host)
    client.written()
    client.send(b"GET /chan/?two HTTP/1.1\r\nHost: x\r\n\r\n")
    assert host.received("http.request")["query_string"] == b"two"


def test_an_idle_keep_alive_connection_closes_after_keepalive_timeout(host, caplog):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    answer(host)
    client.written()
    host.loop.advance(29.0)
    assert not client.conn.closed
    host.loop.advance(1.5)
    assert client.conn.closed and client.written() == b"" and caplog.messages == []


def test_a_pipelined_request_is_served_after_the_first_response(host):
    client = host.connect()
    client.send(b"GET /chan/?1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /chan/?2 HTTP/1.1\r\nHost: x\r\n\r\n")
    request = host.received("http.request")
    assert request["query_string"] == b"1"
    assert host.received("http.request") is None  # one request at a time
    channel = request["reply_channel"]
    host.reply(channel, {"status": 200, "content": b"one"})
    assert status_and_body(client.written()) == (200, b"one")
    assert host.received("http.request")["query_string"] == b"2"


def test_an_error_while_serving_a_pipelined_request_closes_that_connection(host, caplog):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\nGET /boom/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]

    def broken(head):
        if head.path == "/boom/":
            raise RuntimeError("routing broke")
        return True
    host.has_http_route = broken
    host.reply(channel, {"status": 200, "content": b"one"})
    assert status_and_body(client.written()) == (200, b"one")
    assert client.conn.closed
    assert f"error on connection {client.conn.id} from ['10.0.0.1', 50000]; closing it" in (
        caplog.messages)


def test_a_pipelined_request_keeps_its_response_timeout_while_more_bytes_arrive(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\nGET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    answer(host, 200)
    client.written()
    second = host.received("http.request")["reply_channel"]
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")  # a third, pipelined
    host.loop.advance(60.1)
    assert status_and_body(client.written())[0] == 504
    assert second not in host.replies


LIMIT = http_session._PIPELINE_LIMIT


def test_reading_pauses_only_past_256_kib_of_pipelined_bytes(host):
    client = host.connect()
    first = b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    head = head % (LIMIT + 10 - len(head % 100000))  # a pipelined request, LIMIT + 10 bytes
    second = head + b"z" * (LIMIT + 10 - len(head))
    assert len(second) == LIMIT + 10
    client.send(first + second[:LIMIT])
    assert client.conn.reading  # exactly the limit buffered
    client.send(second[LIMIT:LIMIT + 1])
    assert not client.conn.reading  # past it: TCP pushes back
    client.send(second[LIMIT + 1:])  # waits in the socket
    answer(host, 200)
    assert client.conn.reading
    client.send(b"")  # the loop reads the socket again
    request = host.received("http.request")
    assert request["body"] == b"z" * (LIMIT + 10 - len(head))


def test_the_65th_answered_request_sends_the_first_its_http_disconnect(host):
    client = host.connect()
    channels = []
    for _ in range(64):
        client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
        channels.append(answer(host))
    assert host.received("http.disconnect") is None  # 64 kept for the close
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channels.append(answer(host))
    assert host.received("http.disconnect") == {"reply_channel": channels[0], "path": "/chan/"}
    assert host.received("http.disconnect") is None
    client.send_eof()
    told = [host.received("http.disconnect")["reply_channel"] for _ in range(64)]
    assert told == channels[1:] and host.received("http.disconnect") is None


def test_a_full_http_disconnect_channel_drops_it_with_a_warning(monkeypatch, caplog):
    host = full_channel_host(monkeypatch, "http.disconnect")
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    client.send_eof()
    assert client.conn.closed
    assert caplog.messages == [f"http.disconnect channel full; dropped for {channel}"]


def failing_on(layer, monkeypatch, failing_channel):
    send = layer.send

    def broken(channel, message):
        if channel == failing_channel:
            raise RuntimeError("layer broke")
        return send(channel, message)
    monkeypatch.setattr(layer, "send", broken)


def test_a_layer_failing_on_http_disconnect_is_logged_and_the_connection_closes(host, caplog,
                                                                                 monkeypatch):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    failing_on(host.layer, monkeypatch, "http.disconnect")
    client.send_eof()
    assert client.conn.closed and channel not in host.replies
    assert caplog.messages == [f"cannot send http.disconnect for {channel}"]
    assert caplog.records[0].exc_info[1].args == ("layer broke",)


def test_a_layer_failing_on_an_answered_requests_http_disconnect_is_logged(host, caplog,
                                                                            monkeypatch):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = answer(host)
    failing_on(host.layer, monkeypatch, "http.disconnect")
    client.send_eof()
    assert client.conn.closed
    assert caplog.messages == [f"cannot send http.disconnect for {channel}: layer broke"]


def test_a_connection_dropped_mid_request_tells_the_consumer_http_disconnect(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    client.conn.abort()  # e.g. a failed write, or a WSGI stream nobody reads
    assert host.received("http.disconnect") == {"reply_channel": channel, "path": "/chan/"}
    assert channel not in host.replies


def test_a_client_leaving_after_its_whole_body_sent_closes_no_body_channel(monkeypatch):
    host = streaming_host(monkeypatch)  # body_chunk_size=4
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcd")
    request = host.received("http.request")
    client.send(b"ef")
    client.send_eof()
    assert host.received("http.disconnect")["reply_channel"] == request["reply_channel"]
    assert host.received(request["body_channel"]) == {
        "content": b"ef", "closed": False, "more_content": False}
    assert host.received(request["body_channel"]) is None  # no "closed": the body was whole


def test_a_stalled_wsgi_stream_is_logged_with_the_client(host, caplog):
    client = host.connect()
    client.send(b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n")
    [(session, _, _)] = host.wsgi_jobs
    session.wsgi_start(200, [], b"part", True)
    session.wsgi_stalled()
    assert caplog.messages == [
        "client ['10.0.0.1', 50000] not reading a streamed response; dropping it"]


def test_a_last_chunk_with_only_more_content_false_ends_the_response(host):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 200, "content": b"ab", "more_content": True})
    host.reply(channel, {"more_content": False})
    assert status_and_body(client.written()) == (200, b"ab")
    assert ("GET", "/chan/", 200, 2) in host.access_lines and not client.conn.closed


def test_an_invalid_response_is_logged_word_for_word(host, caplog):
    client = host.connect()
    client.send(b"GET /chan/ HTTP/1.1\r\nHost: x\r\n\r\n")
    channel = host.received("http.request")["reply_channel"]
    host.reply(channel, {"status": 200, "headers": "no"})
    assert status_and_body(client.written())[0] == 500
    assert caplog.messages == [
        f"invalid http.response on {channel}: 'headers' must be a list of [name, value] pairs, "
        "not str (message keys: ['headers', 'status'])"]


def test_a_whole_body_waiting_for_room_is_not_timed_out_as_a_slow_body(monkeypatch):
    host = full_channel_host(monkeypatch, backpressure_timeout=30.0)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    host.loop.advance(5.5)  # body_idle_timeout: the body is complete, nothing to wait for
    assert client.written() == b"" and not client.conn.closed
    assert host.received("http.request") == {"filler": True}
    host.loop.run_ready()
    assert host.received("http.request")["body"] == b"abc"


def test_a_last_body_chunk_refused_as_too_large_answers_503_and_closes(monkeypatch):
    host = streaming_host(monkeypatch)  # body_chunk_size=4
    send = host.layer.send

    def refuse_the_last_chunk(channel, message):
        if channel.startswith("http.request.body?") and not message["more_content"]:
            raise host.layer.MessageTooLarge("too large for this test")
        return send(channel, message)
    monkeypatch.setattr(host.layer, "send", refuse_the_last_chunk)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcd")
    client.send(b"ef")  # the whole body: the request could otherwise be reused
    events = responses(client.written())
    assert events[0].status_code == 503 and (b"connection", b"close") in events[0].headers
    assert client.conn.closed


def early_response_with_a_body_waiting_for_room(monkeypatch, **config):
    """A consumer answered (a streamed 200, not yet read by the slow client)
    while the next body chunk waits for room on the full body channel."""
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    host = streaming_host(monkeypatch, layer=layer, backpressure_timeout=3.0, **config)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nabcd")
    request = host.received("http.request")
    channel = request["reply_channel"]
    client.send(b"efgh")  # fills the body channel
    client.send(b"ijkl")  # waits for room
    assert not client.conn.reading
    client.sock.accept = 0  # a slow client: the response head stays buffered
    host.reply(channel, {"status": 200, "content": b"early", "more_content": True})
    assert client.conn.buffered and not client.conn.closed
    return host, client, request["body_channel"]


def test_a_started_response_whose_body_chunk_never_finds_room_is_dropped(monkeypatch):
    host, client, _ = early_response_with_a_body_waiting_for_room(monkeypatch)
    host.loop.advance(3.1)
    assert client.conn.closed and not client.conn.buffered  # dropped, not flushed first
    assert client.written() == b""


def test_a_started_response_whose_body_chunk_the_layer_fails_on_is_dropped(monkeypatch,
                                                                            caplog):
    host, client, body_channel = early_response_with_a_body_waiting_for_room(monkeypatch)
    send = host.layer.send

    def broken(channel, message):
        if channel == body_channel:
            raise RuntimeError("layer broke")
        return send(channel, message)
    monkeypatch.setattr(host.layer, "send", broken)
    assert host.received(body_channel)["content"] == b"efgh"  # room: the retry is scheduled
    host.loop.run_ready()
    assert client.conn.closed and not client.conn.buffered  # dropped, not flushed first
    assert f"cannot send {body_channel} for /chan/: layer broke" in caplog.messages


def test_a_body_chunk_too_large_after_the_response_started_writes_no_second_response(
        monkeypatch, caplog):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = streaming_host(monkeypatch, layer=InMemoryChannelLayer(max_message_size=300))
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabcd")
    request = host.received("http.request")
    host.reply(request["reply_channel"], {"status": 200, "content": b"early",
                                          "more_content": True})
    assert status_and_body(client.written()) == (200, b"early")
    client.send(b"y" * 400)  # too large for the layer
    assert client.conn.closed
    assert client.written() == b""  # not a 503 head inside the 200's chunked body
    assert caplog.messages[0].startswith(
        f"cannot stream request body on {request['body_channel']}: ")


def test_a_request_rejected_while_its_http_request_waits_for_room_is_never_sent(monkeypatch):
    host = full_channel_host(monkeypatch, max_request_body=10)
    client = host.connect()
    client.sock.accept = 4  # a slow client: the connection closes once the 413 is out
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"8\r\nabcdefgh\r\n8\r\nijklmnop\r\n")  # the first chunk waits; 413
    assert client.conn.closing and not client.conn.closed
    assert host.received("http.request") == {"filler": True}  # room
    host.loop.run_ready()
    assert host.received("http.request") is None  # the client was told 413: no consumer runs
    assert len(host.replies) == 0


def test_the_next_request_does_not_wait_behind_an_answered_requests_body(monkeypatch):
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    host = streaming_host(monkeypatch, layer=layer, backpressure_timeout=3.0)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nabcd")
    channel = host.received("http.request")["reply_channel"]
    client.send(b"efgh")  # fills the body channel, which nobody reads
    client.send(b"ijkl")  # the rest waits for room
    host.reply(channel, {"status": 200, "content": b"answered early"})
    assert status_and_body(client.written()) == (200, b"answered early")
    client.send(b"GET /chan/?next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert host.received("http.request")["query_string"] == b"next"
    host.loop.advance(3.1)
    assert client.written() == b"" and not client.conn.closed


def test_body_bytes_after_a_refused_chunk_are_not_read_into_memory(monkeypatch):
    from chanlite.layers.memory import InMemoryChannelLayer
    host = streaming_host(monkeypatch, layer=InMemoryChannelLayer(max_message_size=300))
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4\r\nabcd\r\n")
    request = host.received("http.request")
    client.send(b"190\r\n" + b"y" * 400 + b"\r\n2\r\nzz\r\n")  # refused, then 2 more bytes
    assert status_and_body(client.written()) == (503, b"server busy\n")
    assert client.conn.closed
    assert host.body_memory.used == 0
    # Only the notice that the body ends here, not the 2 bytes after the refusal.
    assert host.received(request["body_channel"]) == {
        "content": b"", "closed": True, "more_content": False}
    assert host.received(request["body_channel"]) is None


def test_body_chunks_still_waiting_when_the_connection_closes_are_dropped(monkeypatch):
    from chanlite.layers.memory import InMemoryChannelLayer
    layer = InMemoryChannelLayer(channel_capacity={"http.request.body*": 1})
    host = streaming_host(monkeypatch, layer=layer)
    client = host.connect()
    client.send(b"POST /chan/ HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nabcd")
    request = host.received("http.request")
    client.send(b"efgh")  # fills the body channel
    client.send(b"ijkl")  # waits for room
    host.reply(request["reply_channel"], {"status": 413, "content": b"no thanks"})
    assert status_and_body(client.written()) == (413, b"no thanks")
    assert client.conn.closed  # the rest of the body was not read: no reuse
    assert host.received(request["body_channel"])["content"] == b"efgh"  # room
    host.loop.run_ready()
    assert host.received(request["body_channel"]) is None  # nobody sends for a closed client
