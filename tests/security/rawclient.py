"""Raw-socket HTTP/WebSocket helpers for the security tests.

Attacks are byte-exact (two framing headers, a 1-byte trickle, a forged
cookie), so these tests write bytes to a socket themselves instead of going
through a client library that would "fix" the request.
"""

from __future__ import annotations

import base64
import os
import socket
import time

WAIT = 5.0  # every blocking read here is bounded by this


def connect(server, timeout: float = WAIT) -> socket.socket:
    host, port = server.address[:2]
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def read_response(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Bytes until one complete response (by Content-Length) or EOF."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length is not None and len(body) >= length:
                return data
            if head.startswith(b"HTTP/1.1 101"):
                return data
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no complete response within {timeout}s; got {data[:300]!r}"
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_until_closed(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes the connection."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"connection not closed within {timeout}s; got {data[:300]!r}"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def read_head(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """A response head only, byte by byte, so the WebSocket frames that may
    follow a 101 in the same packet stay in the socket for ws_read_text."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), f"not an HTTP response: {response[:200]!r}"
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def request(server, raw: bytes, timeout: float = WAIT) -> bytes:
    """Send ``raw``, return the first response."""
    with connect(server, timeout) as sock:
        sock.sendall(raw)
        return read_response(sock, timeout)


def get(server, path: str, headers: dict | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return request(server, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def ws_handshake(path: str, headers: dict | None = None, version: str = "1.1",
                 key: str | None = None, host: str = "127.0.0.1") -> bytes:
    lines = [
        f"GET {path} HTTP/{version}", f"Host: {host}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key or ws_key()}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def ws_frame(text: str) -> bytes:
    """One masked client text frame (payload < 126 bytes)."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def ws_read_text(sock: socket.socket, timeout: float = WAIT) -> str:
    """One unmasked server text frame (payload < 64 KiB)."""
    sock.settimeout(timeout)
    head = _read_exact(sock, 2)
    assert head[0] & 0x0F == 1, f"expected a text frame, got opcode {head[0] & 0x0F}"
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(_read_exact(sock, 2), "big")
    return _read_exact(sock, size).decode()


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed mid-frame"
        data += chunk
    return data
