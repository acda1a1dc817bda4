"""The HTTP/1.1 protocol core: bytes in, request events out; responses in, bytes out.

Sans-I/O (like h11, on which it is built): no sockets, no threads, no clocks,
so every behaviour - keep-alive, pipelining, chunked request bodies,
``Expect: 100-continue``, size limits, the WebSocket upgrade handshake - is
tested by feeding bytes. The connection object (``connection.py``) owns the
socket and decides where a request goes; this module only speaks HTTP.

One :class:`HTTPCore` serves one TCP connection, one request at a time: after
a request's body ends, :meth:`HTTPCore.next_event` returns ``None`` until the
response is finished, so pipelined requests wait in h11's buffer in order.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import h11
from wsproto.utilities import generate_accept_token

__all__ = [
    "client_text",
    "HTTPCore",
    "RequestHead",
    "Body",
    "EndOfBody",
    "Disconnected",
    "Reject",
    "error_response",
    "asgi_request",
    "check_response",
    "response_headers",
]


def _header_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


def check_response(message: dict[str, Any], started: bool) -> str:
    """An error text for an invalid ``http.response`` message, or ``""``.

    ``started``: whether the response head was already sent (then the
    message is a body chunk: ``status`` and ``headers`` are not read). Shared
    by the server and the testing clients, so a test fails exactly where
    production would answer 500.
    """
    if not isinstance(message, dict):
        return f"the reply must be a dict, not {type(message).__name__}"
    if not started:
        if "status" not in message:
            return "the first http.response message needs a 'status' (an int such as 200)"
        status = message["status"]
        if type(status) is not int or not 200 <= status < 1000:
            return f"'status' must be an int from 200 to 999, not {status!r}"
        headers = message.get("headers", ())
        if not isinstance(headers, (list, tuple)):
            return f"'headers' must be a list of [name, value] pairs, not {type(headers).__name__}"
        for pair in headers:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return f"each header must be a [name, value] pair, not {pair!r:.60}"
            if _header_bytes(pair[0]) is None or _header_bytes(pair[1]) is None:
                return (f"header {pair!r:.60}: names and values must be bytes (or latin-1 "
                        "encodable str)")
    content = message.get("content", b"")
    if not isinstance(content, (bytes, bytearray)):
        return f"'content' must be bytes, not {type(content).__name__}"
    return ""


def response_headers(message: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The headers of a response checked by :func:`check_response`, as bytes
    pairs (str names and values encoded as latin-1)."""
    return [(_header_bytes(k), _header_bytes(v))  # type: ignore[misc]
            for k, v in message.get("headers", ())]


@dataclass(slots=True)
class RequestHead:
    """A request line and headers (the body follows as :class:`Body` events)."""

    method: str
    target: bytes
    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    websocket: bool = False
    content_length: int | None = None
    # Who sent it, as the app should see it (``proxy.apply_proxy_headers``
    # fills these from the socket, or from trusted proxy headers).
    client: list[Any] | None = None
    scheme: str = "http"
    root_path: str = ""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Body:
    """A piece of the request body (already de-chunked)."""

    data: bytes


@dataclass(slots=True)
class EndOfBody:
    """The request body is complete."""


@dataclass(slots=True)
class Disconnected:
    """The client closed its side of the connection."""


@dataclass(slots=True)
class Reject:
    """The client broke the protocol or a limit; send ``data`` and close."""

    status: int
    reason: str
    data: bytes


Event = RequestHead | Body | EndOfBody | Disconnected | Reject

_date_cache: list[Any] = [0, b""]  # [second, formatted]
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def http_date() -> bytes:
    """The ``Date`` header value, formatted at most once a second (it is hot)."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
    formatted: bytes = _date_cache[1]
    return formatted


def error_response(status: int, detail: str = "",
                   headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    """A complete, self-contained ``Connection: close`` error response.

    Built by hand rather than through h11 because it must work in any h11
    state, including after h11 has refused the client's bytes.
    """
    phrase = HTTPStatus(status).phrase
    body = f"{status} {phrase}\n{detail}\n".encode("utf-8", "replace")
    lines = [
        f"HTTP/1.1 {status} {phrase}".encode(),
        b"content-type: text/plain; charset=utf-8",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        b"date: " + http_date(),
    ]
    for name, value in headers or ():
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# What a client is told for a protocol error (the details are logged).
_PUBLIC_DETAIL = {
    400: "malformed request",
    431: "request line and headers too large",
    501: "not implemented",
    505: "HTTP version not supported",
}


def _has_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(key == name for key, _ in headers)


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """``(raw_path, query_string)`` of an origin-form or absolute-form target."""
    if target[:1] != b"/" and b"://" in target[:10]:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        target = rest[slash:] if slash >= 0 else b"/"
    raw_path, _, query = target.partition(b"?")
    return raw_path.partition(b"#")[0], query


def _comma_tokens(value: bytes | None) -> set[bytes]:
    if not value:
        return set()
    return {part.strip().lower() for part in value.split(b",")}


class HTTPCore:
    """One HTTP/1.1 server connection's protocol state (no I/O).

    Feed bytes with :meth:`receive` (``b""`` at end of stream) and drain
    events with :meth:`next_event` until it returns ``None``. Produce the
    answer with :meth:`response_start` / :meth:`response_body` (or
    :meth:`accept_websocket` / :meth:`reject_websocket` for an upgrade), then
    call :meth:`finish` to learn whether the connection may be reused.
    """

    def __init__(self, max_header_size: int = 65536, max_request_body: int = 10 * 1024 * 1024):
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_size)
        self.max_header_size = max_header_size
        self.max_request_body = max_request_body
        self.head: RequestHead | None = None
        self.body_received = 0
        self.response_started = False
        self.response_done = False
        self.must_close = False
        self._head_method = b"GET"
        self._no_body = False  # HEAD, 204 and 304 responses carry no body

    # -------------------------------------------------------------- input

    def receive(self, data: bytes) -> None:
        """Buffer bytes from the client (``b""`` means the client closed)."""
        try:
            self.conn.receive_data(data)
        except h11.RemoteProtocolError:  # data after EOF: ignore, we are closing
            pass

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed (pipelined requests wait here)."""
        return len(self.conn._receive_buffer)

    def next_event(self) -> Event | None:
        """The next request event, or ``None`` if more bytes are needed (or the
        current request must be answered before the next one is read)."""
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self.must_close = True
            # The parser's text goes to our log (``reason``), never to the
            # client: it may quote the client's bytes back (reflection) and
            # tells a prober which parser and version it is talking to.
            return Reject(status, str(exc), error_response(status, _PUBLIC_DETAIL.get(
                status, "malformed request")))
        if type(event) is h11.Data:
            self.body_received += len(event.data)
            if self.body_received > self.max_request_body:
                return self._too_large()
            return Body(bytes(event.data))
        if type(event) is h11.Request:
            return self._request_head(event)
        if type(event) is h11.EndOfMessage:
            return EndOfBody()
        if type(event) is h11.ConnectionClosed:
            return Disconnected()
        return None  # NEED_DATA, or PAUSED until this request is answered

    def _too_large(self) -> Reject:
        self.must_close = True
        detail = f"request body above the {self.max_request_body}-byte limit"
        return Reject(413, detail, error_response(413, detail))

    def _request_head(self, event: h11.Request) -> Event:
        self.body_received = 0
        self.response_started = self.response_done = False
        raw_path, query = _split_target(event.target)
        headers = [(bytes(k), bytes(v)) for k, v in event.headers]
        length = None
        size = len(event.target)
        for key, value in headers:
            size += len(key) + len(value) + 4
            if key == b"content-length":
                length = int(value)  # h11 validated it
        if length is not None and _has_header(headers, b"transfer-encoding"):
            # RFC 9112 6.1: both framings at once is how request smuggling
            # starts (a proxy in front may frame by the other one). Refuse,
            # and close: we cannot know where the next request begins.
            self.must_close = True
            detail = "request has both Content-Length and Transfer-Encoding"
            return Reject(400, detail, error_response(400, detail))
        if size > self.max_header_size:
            # h11 only limits *incomplete* heads; a big one read at once lands here.
            self.must_close = True
            detail = f"request line and headers above {self.max_header_size} bytes"
            return Reject(431, detail, error_response(431, detail))
        head = RequestHead(
            method=event.method.decode("ascii"),
            target=bytes(event.target),
            path=unquote(raw_path.decode("latin-1"), errors="replace"),
            raw_path=raw_path,
            query_string=query,
            http_version=event.http_version.decode("ascii"),
            headers=headers,
            content_length=length,
        )
        self.head = head
        self._head_method = event.method
        if length is not None and length > self.max_request_body:
            return self._too_large()
        upgrade = _comma_tokens(head.header(b"upgrade"))
        if b"websocket" in upgrade:
            problem = self._websocket_problem(head)
            if problem:
                self.must_close = True
                return Reject(400, problem, error_response(400, problem, [
                    (b"sec-websocket-version", b"13")]))
            head.websocket = True
        return head

    @staticmethod
    def _websocket_problem(head: RequestHead) -> str:
        if head.method != "GET":
            return "WebSocket handshake must use GET"
        if head.http_version != "1.1":
            # RFC 6455 4.1: the handshake is HTTP/1.1 (1.0 has no Upgrade).
            return "WebSocket handshake must use HTTP/1.1"
        if b"upgrade" not in _comma_tokens(head.header(b"connection")):
            return "WebSocket handshake needs 'Connection: Upgrade'"
        if head.header(b"sec-websocket-version") != b"13":
            return "unsupported Sec-WebSocket-Version (only 13 is supported)"
        key = (head.header(b"sec-websocket-key") or b"").strip()
        try:
            nonce = base64.b64decode(key, validate=True)
        except (ValueError, binascii.Error):
            nonce = b""
        if len(nonce) != 16:  # RFC 6455 4.1: base64 of a random 16-byte nonce
            return "missing or malformed Sec-WebSocket-Key (base64 of 16 bytes)"
        return ""

    def continue_100(self) -> bytes:
        """``100 Continue`` if the client is waiting for it before its body."""
        if self.conn.they_are_waiting_for_100_continue:
            return self.conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        return b""

    @property
    def body_complete(self) -> bool:
        return self.conn.their_state is not h11.SEND_BODY

    # ------------------------------------------------------------- output

    def response_start(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        more: bool = False,
        reason: bytes | None = None,
    ) -> bytes:
        """Serialize a response head plus the first body bytes.

        Without ``more`` the body is complete, so it gets a ``Content-Length``
        (no chunking); with ``more`` and no length, h11 chunks it (HTTP/1.1)
        or delimits it by closing (HTTP/1.0). Raises ``h11.LocalProtocolError``
        (or ``ValueError``) for an invalid status or header.
        """
        has_length = False
        has_date = False
        for name, _ in headers:
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"date":
                has_date = True
        headers = list(headers)
        if not more and not has_length and status not in (204, 304):
            headers.append((b"content-length", str(len(body)).encode()))
        if not has_date:
            headers.append((b"date", http_date()))
        if self.must_close or not self.body_complete:
            # Closing anyway, or an unread request body (the connection cannot
            # be reused safely): one header either way.
            headers.append((b"connection", b"close"))
        if reason is None:
            reason = _REASONS.get(status, b"")
        out = self.conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
        self.response_started = True
        self._no_body = self._head_method == b"HEAD" or status in (204, 304)
        return out + self.response_body(body, more)

    def response_body(self, body: bytes, more: bool = False) -> bytes:
        """Serialize more body; ``more=False`` ends the response."""
        out = b""
        if body and not self._no_body and self.conn.our_state is h11.SEND_BODY:
            out = self.conn.send(h11.Data(data=body))
        if not more:
            out += self.conn.send(h11.EndOfMessage())
            self.response_done = True
        return out

    def accept_websocket(self, headers: tuple[tuple[bytes, bytes], ...] = ()
                         ) -> tuple[bytes, bytes]:
        """``101 Switching Protocols`` bytes and the bytes the client already
        sent after its handshake (the first WebSocket frames)."""
        assert self.head is not None and self.head.websocket
        key = (self.head.header(b"sec-websocket-key") or b"").strip()
        out = self.conn.send(
            h11.InformationalResponse(
                status_code=101,
                reason=b"Switching Protocols",
                headers=[
                    (b"upgrade", b"websocket"),
                    (b"connection", b"Upgrade"),
                    (b"sec-websocket-accept", generate_accept_token(key)),
                    *headers,
                ],
            )
        )
        self.response_started = self.response_done = True
        return out, bytes(self.conn.trailing_data[0])

    def reject_websocket(self, status: int = 403) -> bytes:
        """Refuse an upgrade with a plain response; the connection then closes."""
        self.must_close = True
        return self.response_start(status, [(b"content-type", b"text/plain")],
                                   HTTPStatus(status).phrase.encode())

    def finish(self) -> bool:
        """After a complete response: start the next request cycle if the
        connection can be reused (keep-alive) and return whether it can."""
        if self.must_close or not self.response_done:
            return False
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            self.head = None
            return True
        return False


def asgi_request(
    head: RequestHead,
    reply_channel: str,
    body: bytes,
    client: list[Any] | None,
    server: list[Any] | None,
    root_path: str = "",
    scheme: str = "http",
    body_channel: str | None = None,
) -> dict[str, Any]:
    """The ``http.request`` message (spec: docs of ASGI 1.0 formats)."""
    message = {
        "reply_channel": reply_channel,
        "http_version": head.http_version,
        "method": head.method,
        "path": head.path,
        "root_path": root_path,
        "scheme": scheme,
        "query_string": head.query_string,
        "headers": [[name, value] for name, value in head.headers],
        "body": body,
        "client": client,
        "server": server,
    }
    if body_channel is not None:
        message["body_channel"] = body_channel
    return message


def wsgi_path(head: RequestHead) -> str:
    """PATH_INFO as a WSGI "bytes-as-latin-1" string."""
    return unquote_to_bytes(head.raw_path).decode("latin-1")


def client_text(client: Any) -> str:
    """``127.0.0.1:51234`` (``[::1]:51234``; ``-`` for a Unix socket): how log
    lines name a client, never a Python repr of the address."""
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
