"""Misbehaving clients over real sockets: each is answered or cut off, nothing leaks."""

from __future__ import annotations

import socket
import struct
import time

import websocket

from chanlite.testing import eventually

from .server_fixtures import (
    WAIT,
    http_request,
    raw_socket,
    read_until_closed,
    recv_close_code,
    ws_connect,
)


def wait_no_connections(server, timeout: float = WAIT) -> None:
    eventually(lambda: not server.connections,
               lambda: f"every connection to close ({len(server.connections)} leaked)",
               timeout=timeout)


def send_raw(server, data: bytes) -> bytes:
    sock = raw_socket(server)
    sock.sendall(data)
    reply = read_until_closed(sock)
    sock.close()
    return reply


def test_malformed_request_is_400_and_closed(chanlite_server):
    server = chanlite_server()
    assert send_raw(server, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    wait_no_connections(server)


def test_huge_headers_are_431(chanlite_server):
    server = chanlite_server(max_header_size=4096)
    reply = send_raw(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_big_body_is_413_for_wsgi_and_consumers(chanlite_server):
    server = chanlite_server(max_request_body=1000)
    for path in ["/hello/", "/chan/body/"]:
        status, _, _ = http_request(server, "POST", path, body=b"x" * 2000)
        assert status == 413


def test_header_trickle_is_cut_off(chanlite_server):
    server = chanlite_server(header_timeout=0.3)
    sock = raw_socket(server)
    start = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\n")
    reply = read_until_closed(sock)  # the server closes; we never finish the headers
    sock.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start < 0.3 + 2
    # A connection that never sends anything is closed silently.
    sock = raw_socket(server)
    assert read_until_closed(sock) == b""
    sock.close()
    wait_no_connections(server)


def test_server_keeps_serving_while_one_client_trickles(chanlite_server):
    server = chanlite_server(header_timeout=5)
    slow = raw_socket(server)
    slow.sendall(b"GET /hello/ HTTP/1.1\r\nHo")
    assert http_request(server, "GET", "/hello/")[0] == 200
    slow.close()


def test_websocket_protocol_error_is_1002(chanlite_server):
    server = chanlite_server()
    ws = ws_connect(server, "/echo/")
    ws.sock.sendall(b"\x81\x02hi")  # an unmasked client frame breaks RFC 6455
    assert recv_close_code(ws) == 1002
    ws.close()
    wait_no_connections(server)


def test_pings_and_missing_pong_closes_1011(chanlite_server):
    server = chanlite_server(websocket_ping_interval=0.1, websocket_ping_timeout=0.2)
    ws = ws_connect(server, "/echo/", skip_utf8_validation=True)
    opcode, payload = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PING
    # websocket-client answers pings when *it* reads them; from now on we read
    # the raw socket, so no pong goes out and the server must give up on us.
    data = b""
    ws.sock.settimeout(WAIT)
    deadline = time.monotonic() + WAIT  # pings keep coming: bound the loop itself
    while b"\x88" not in data:
        assert time.monotonic() < deadline, f"no close frame within {WAIT}s: {data[-100:]!r}"
        chunk = ws.sock.recv(4096)
        assert chunk, "connection closed without a close frame"
        data += chunk
    index = data.index(b"\x88")
    assert struct.unpack("!H", data[index + 2 : index + 4])[0] == 1011
    ws.sock.close()


def test_slow_reader_is_disconnected_not_buffered(chanlite_server):
    server = chanlite_server(max_outbound_buffer=256 * 1024)
    ws = ws_connect(server, "/echo/")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    message = "x" * 60_000
    try:
        for _ in range(400):  # 24 MB echoed back at a client that never reads
            ws.send(message)
    except OSError:
        pass  # the server dropped us while we were still sending: expected
    wait_no_connections(server, timeout=20)
    ws.sock.close()


def test_bad_websocket_handshake_is_400(chanlite_server):
    server = chanlite_server()
    reply = send_raw(
        server,
        b"GET /echo/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 400 ")


def _read_hello(sock, what: str) -> bytes:
    """Read one /hello/ response; fail clearly on EOF or after ``WAIT`` s, never spin."""
    data = b""
    deadline = time.monotonic() + WAIT
    while not data.endswith(b"Hello, world"):
        assert time.monotonic() < deadline, (
            f"no complete response within {WAIT}s ({what}): {data!r}"
        )
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"response stalled ({what}) after {data!r}") from None
        assert chunk, f"server closed the connection ({what}) after {data!r}"
        data += chunk
    return data


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(chanlite_server):
    # The pauses between requests are far inside the keep-alive window (1.1 s
    # of slack for a loaded machine), yet add up to more than the window: so
    # each request restarts the idle timer rather than the connection merely
    # being young. Then silence must close it, no sooner than the timeout.
    keepalive, pause, pauses = 1.5, 0.4, 4
    assert pause * pauses > keepalive
    server = chanlite_server(keepalive_timeout=keepalive, header_timeout=5)
    sock = raw_socket(server)
    first = time.monotonic()
    answered = first
    for i in range(pauses + 1):
        if i:
            # Deliberate idle period inside the window: the assertion is that
            # the connection survives it (the next request is answered).
            time.sleep(pause)
        idle = time.monotonic() - answered
        sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = _read_hello(sock, f"request {i + 1}, sent after {idle:.2f}s idle of a "
                                  f"{keepalive}s keep-alive window")
        assert reply.startswith(b"HTTP/1.1 200 "), reply
        answered = time.monotonic()
    assert answered - first > keepalive, "the requests did not span more than one window"
    assert read_until_closed(sock) == b"", "unexpected bytes on an idle keep-alive connection"
    elapsed = time.monotonic() - answered
    # The server's timer starts when it has sent the reply, a little before we
    # read it, hence the small allowance below the timeout.
    assert keepalive - 0.1 < elapsed < keepalive + 3, f"idle connection closed after {elapsed:.2f}s"
    sock.close()


def test_half_closed_client_still_gets_its_view_response(chanlite_server):
    server = chanlite_server()
    sock = raw_socket(server)
    sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    reply = read_until_closed(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"Hello, world")
    wait_no_connections(server)
