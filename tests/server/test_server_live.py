"""The interface server over real sockets: HTTP (WSGI and consumers) and WebSocket.

Every test runs twice (``layered_server``): on the in-memory layer with
embedded workers, and on the IPC layer with consumers in a separate
``runworker`` process.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
import websocket

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

# ----------------------------------------------------------------- WSGI


def test_django_view_keep_alive(layered_server):
    server = layered_server()
    host, port = server.address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=WAIT)
    for _ in range(3):
        conn.request("GET", "/hello/")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"Hello, world"
    conn.request("GET", "/nothing-here/")
    response = conn.getresponse()
    assert response.status == 404
    response.read()
    conn.close()


def test_pipelined_requests_answer_in_order(layered_server):
    server = layered_server()
    sock = raw_socket(server)
    request = b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock.sendall(request * 3 + b"GET /chan/hello/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Connection: close\r\n\r\n")
    data = read_until_closed(sock)
    sock.close()
    assert data.count(b"HTTP/1.1 200 OK") == 4
    assert data.index(b"Hello, world") < data.index(b"hello from a consumer /chan/hello/x")


# ------------------------------------------------------------ WebSocket


def test_websocket_echo_text_and_bytes(layered_server):
    server = layered_server()
    ws = ws_connect(server, "/echo/")
    ws.send("héllo")
    assert ws.recv() == "héllo"
    ws.send_binary(b"\x00\xff")
    assert ws.recv() == b"\x00\xff"
    for _ in range(3):
        ws.send("order")
    # Orders keep growing (two workers may answer out of order, hence sorted).
    assert sorted(ws.recv() for _ in range(3)) == ["3", "4", "5"]
    ws.close()


def test_websocket_json(layered_server):
    server = layered_server()
    ws = ws_connect(server, "/json/")
    ws.send(json.dumps({"numbers": [1, 2, 3.5]}))
    assert json.loads(ws.recv()) == {"sum": 6.5}
    ws.close()


def test_first_text_accepts(layered_server):
    server = layered_server()
    ws = ws_connect(server, "/greet/")
    assert ws.recv() == "hello"
    ws.close()


def test_groups_across_two_connections_and_disconnect_codes(layered_server):
    server = layered_server()
    alice = ws_connect(server, "/chat/lobby/")
    bob = ws_connect(server, "/chat/lobby/")
    other = ws_connect(server, "/chat/kitchen/")
    alice.send("hi all")
    assert alice.recv() == "hi all"
    assert bob.recv() == "hi all"
    bob.send("hi alice")
    assert alice.recv() == "hi alice"
    other.send("only me")
    assert other.recv() == "only me"
    bob.close(status=4002)
    assert layer_wait(server.layer, "test.disconnects") == {"code": 4002, "order": 2}
    alice.sock.close()  # dropped without a close frame
    assert layer_wait(server.layer, "test.disconnects")["code"] == 1006
    other.close()
    assert layer_wait(server.layer, "test.disconnects") == {"code": 1000, "order": 2}


@pytest.mark.parametrize("path", ["/reject/", "/refuse/"])
def test_rejected_handshake_is_403(layered_server, path):
    server = layered_server()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, path)
    assert info.value.status_code == 403


def test_unanswered_connect_times_out_with_403(layered_server):
    server = layered_server(websocket_connect_timeout=0.3)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, "/silent/")
    assert info.value.status_code == 403


def test_server_close_code_reaches_client(layered_server):
    server = layered_server()
    ws = ws_connect(server, "/echo/")
    ws.send("close:4001")
    assert recv_close_code(ws) == 4001
    ws.close()


def test_origin_check(layered_server):
    server = layered_server()
    port = server.address[1]
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, "/echo/", origin="http://evil.example")
    assert info.value.status_code == 403
    ws = ws_connect(server, "/echo/", origin=f"http://localhost:{port}")
    ws.send("ok")
    assert ws.recv() == "ok"
    ws.close()


def test_origin_check_can_be_configured(layered_server):
    server = layered_server(allowed_origins=["evil.example"])
    ws = ws_connect(server, "/echo/", origin="http://evil.example")
    ws.send("allowed")
    assert ws.recv() == "allowed"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, "/echo/", origin="http://other.example")  # not in the list
    assert info.value.status_code == 403
    off = layered_server(check_origin=False)
    ws = ws_connect(off, "/echo/", origin="http://anything.example")
    ws.send("unchecked")
    assert ws.recv() == "unchecked"
    ws.close()


def test_oversized_message_closes_1009(layered_server):
    server = layered_server(websocket_max_message_size=1000)
    ws = ws_connect(server, "/echo/")
    ws.send("x" * 1001)
    assert recv_close_code(ws) == 1009
    ws.close()


# --------------------------------------------------- HTTP via consumers


def test_http_request_consumer(layered_server):
    server = layered_server()
    status, headers, body = http_request(server, "GET", "/chan/hello/abc?x=1")
    assert status == 200
    assert body == b"hello from a consumer /chan/hello/abc"
    assert headers["content-type"] == "text/plain"


def test_streamed_response_is_chunked(layered_server):
    server = layered_server()
    status, headers, body = http_request(server, "GET", "/chan/stream/")
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked"
    assert body == b"one,two,three"


def test_long_poll_answered_by_group_message(layered_server):
    server = layered_server()
    result = {}

    def client():
        result["response"] = http_request(server, "GET", "/chan/poll/")

    thread = threading.Thread(target=client)
    thread.start()
    layer_wait(server.layer, "test.parked")
    server.layer.send_group("poll", {"status": 200, "headers": [], "content": b"news"})
    thread.join(WAIT)
    assert not thread.is_alive(), "long-poll client did not get its response"
    assert result["response"][0] == 200 and result["response"][2] == b"news"


def test_long_poll_times_out_with_504(layered_server):
    server = layered_server(http_response_timeout=0.3)
    status, _, _ = http_request(server, "GET", "/chan/poll/")
    assert status == 504


def test_client_leaving_a_long_poll_sends_http_disconnect(layered_server):
    server = layered_server()
    sock = raw_socket(server)
    sock.sendall(b"GET /chan/poll/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    layer_wait(server.layer, "test.parked")
    sock.close()
    assert layer_wait(server.layer, "test.http_disconnect") == {"path": "/chan/poll/"}


@pytest.mark.parametrize("size, chunked", [(1000, False), (600_000, True)])
def test_request_body_small_and_via_body_channel(layered_server, size, chunked):
    server = layered_server(body_chunk_size=64 * 1024)
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    status, headers, reply = http_request(server, "POST", "/chan/body/", body=body)
    assert status == 200
    assert reply == b"%d:%s" % (size, body[:10])
    assert headers["x-body-channel"] == str(chunked)


def test_channel_full_for_the_whole_backpressure_timeout_answers_503(chanlite_server):
    from chanlite.layers.memory import InMemoryChannelLayer

    layer = InMemoryChannelLayer(channel_capacity={"http.request": 1})
    server = chanlite_server(workers=0, layer=layer, backpressure_timeout=0.3)
    layer.send("http.request", {"filler": True})
    status, headers, _ = http_request(server, "GET", "/chan/hello/")
    assert status == 503
    assert headers["retry-after"] == "1"


# ------------------------------------------------------------ shutdown


def test_graceful_shutdown(layered_server):
    server = layered_server()
    ws = ws_connect(server, "/echo/")
    result = {}

    def poll():
        result["response"] = http_request(server, "GET", "/chan/poll/")

    poller = threading.Thread(target=poll)
    poller.start()
    layer_wait(server.layer, "test.parked")
    stopper = threading.Thread(target=lambda: result.setdefault("stopped", server.shutdown(10)))
    stopper.start()
    assert recv_close_code(ws) == 1001
    ws.close()
    # The listener is closed: new connections are refused.
    def refused() -> bool:
        try:
            socket.create_connection(server.address[:2], timeout=WAIT).close()
        except OSError:
            return True
        return False

    eventually(refused, "the listener to refuse connections during shutdown", timeout=WAIT,
               interval=0.02)
    # The in-flight long-poll still gets its answer.
    server.layer.send_group("poll", {"status": 200, "headers": [], "content": b"bye"})
    poller.join(WAIT)
    assert not poller.is_alive(), "the parked long-poll got no answer during shutdown"
    stopper.join(WAIT + 10)
    assert not stopper.is_alive(), "shutdown did not return"
    assert result["response"][2] == b"bye"
    assert result["stopped"] is True


def test_unix_socket(chanlite_server, tmp_path):
    path = str(tmp_path / "chanlite.sock")
    server = chanlite_server(unix_socket=path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(path)
    sock.sendall(b"GET /chan/hello/unix HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"/chan/hello/unix" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed early: {data!r}"
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert server.shutdown(10)
    import os

    assert not os.path.exists(path), "the socket file is removed on shutdown"
