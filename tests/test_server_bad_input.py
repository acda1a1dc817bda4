"""Misbehaving clients over real sockets: each is answered or cut off, nothing leaks."""
# ruff: noqa: F811  (pytest fixtures imported from server_fixtures are parameters here)

from __future__ import annotations

import socket
import struct
import time

import websocket

from .server_fixtures import (
    WAIT,
    chanlite_server,  # noqa: F401 (fixture)
    http_request,
    raw_socket,
    read_until_closed,
    recv_close_code,
    ws_connect,
)


def wait_no_connections(server, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while server.connections:
        assert time.monotonic() < deadline, f"connections leaked: {len(server.connections)}"
        time.sleep(0.01)


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
    while b"\x88" not in data:
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


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(chanlite_server):
    server = chanlite_server(keepalive_timeout=0.4, header_timeout=5)
    sock = raw_socket(server)
    for _ in range(3):  # requests inside the keep-alive window keep the connection
        sock.sendall(b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while not data.endswith(b"Hello, world"):
            chunk = sock.recv(4096)
            assert chunk, f"closed inside the keep-alive window after {data!r}"
            data += chunk
        time.sleep(0.2)
    start = time.monotonic()
    assert read_until_closed(sock) == b""  # then silence closes it
    assert 0.1 < time.monotonic() - start < 0.4 + 2
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
