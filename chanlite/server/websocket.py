"""The WebSocket protocol core: frames in, whole messages out; sends in, frames out.

Sans-I/O on top of wsproto's post-handshake ``Connection`` (the handshake
itself is HTTP and lives in ``http.py``). This module adds what the server
needs beyond wsproto: reassembly of fragmented messages with a size limit
(close 1009, decided from the frame header), automatic pongs, the mapping
from protocol failures to close codes (1002, 1007), and validation of
``websocket.send`` messages.

Speed: wsproto's general frame parser costs tens of microseconds per frame.
Nearly every frame a server sees is a whole masked text or binary message,
so :meth:`WebSocketCore.receive` splits frames itself and decodes those
directly; everything else (control frames, fragments, anything malformed)
is handed to wsproto as complete frames, so its state stays exact.
Tests drive it with frames built by a wsproto client connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason, Opcode
from wsproto.utilities import LocalProtocolError

__all__ = ["WebSocketCore", "Closed", "PongReceived", "WSEvent", "check_send"]

SEND_KEYS = frozenset({"accept", "text", "bytes", "close"})
# RFC 6455 7.4.1: 1004-1006 and 1015 must never be sent in a close frame.
# (1004 is reserved and deliberately absent from wsproto's enum; 1014 "bad
# gateway" is registered but absent too: both stay in range() below.)
_SENDABLE_CODES = frozenset(
    range(CloseReason.NORMAL_CLOSURE, CloseReason.TLS_HANDSHAKE_FAILED)
) - {1004, CloseReason.NO_STATUS_RCVD, CloseReason.ABNORMAL_CLOSURE}

# Frame header bits, as plain ints for the fast path (RFC 6455 5.2).
_FIN = 0x80
_RSV = 0x70
_MASKED = 0x80
_CONTINUATION, _TEXT, _BINARY = int(Opcode.CONTINUATION), int(Opcode.TEXT), int(Opcode.BINARY)
_CLOSE, _PONG = int(Opcode.CLOSE), int(Opcode.PONG)
_FIN_TEXT, _FIN_BINARY = _FIN | _TEXT, _FIN | _BINARY
_MAX_CONTROL_PAYLOAD = 125


@dataclass(slots=True)
class Closed:
    """The WebSocket is finished; ``code`` goes into ``websocket.disconnect``.

    ``fatal``: the incoming stream is unusable (a protocol error, or we stopped
    reading mid-message), so do not wait for the client's close reply.
    """

    code: int
    reason: str = ""
    fatal: bool = False


@dataclass(slots=True)
class PongReceived:
    """The client answered a ping (keeps the connection alive)."""


#: What :meth:`WebSocketCore.receive` returns: ``{"text": str}`` /
#: ``{"bytes": bytes}`` messages, pongs, and at most one close.
WSEvent = dict[str, Any] | PongReceived | Closed


def _unmask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte masking key, as one big-int operation (fast in C)."""
    size = len(payload)
    mask = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(mask, "little")).to_bytes(
        size, "little"
    )


def check_send(message: dict[str, Any]) -> str:
    """Return an error text for an invalid ``websocket.send``, or ``""``."""
    unknown = set(message) - SEND_KEYS
    if unknown:
        return f"unknown keys {sorted(unknown)} (allowed: accept, text, bytes, close)"
    if "text" in message and "bytes" in message:
        return "'text' and 'bytes' cannot be sent in one message"
    if "text" in message and not isinstance(message["text"], str):
        return f"'text' must be str, not {type(message['text']).__name__}"
    if "bytes" in message and not isinstance(message["bytes"], bytes):
        return f"'bytes' must be bytes, not {type(message['bytes']).__name__}"
    close = message.get("close", False)
    if close is not False and close is not True and not (
        type(close) is int and (close in _SENDABLE_CODES or 3000 <= close <= 4999)
    ):
        return f"'close' must be True or a valid close code, not {close!r}"
    return ""


def handshake_action(message: dict[str, Any]) -> str:
    """What a valid reply does to a handshake that is still pending:
    ``"reject"`` (HTTP 403), ``"accept"`` (101, then apply the rest of the
    message) or ``"wait"`` (nothing yet). Validate with :func:`check_send`
    first. Shared by the server and the testing clients, which must agree."""
    accept = message.get("accept")
    data = "text" in message or "bytes" in message
    if accept is False or (message.get("close", False) is not False and accept is not True
                           and not data):
        return "reject"
    if accept is True or data:
        return "accept"
    return "wait"


class WebSocketCore:
    """One open WebSocket (server side) after the 101 response.

    :meth:`receive` returns a list of events: ``{"text": str}`` /
    ``{"bytes": bytes}`` dicts for complete messages, :class:`PongReceived`,
    and at most one :class:`Closed`. Bytes to write (pongs, close replies,
    frames from :meth:`send`) collect in :meth:`data_to_send`.
    """

    __slots__ = (
        "ws", "max_message_size", "_parts", "_size", "_text", "_out", "closed",
        "_buf", "_mid", "_failing", "more",
    )

    def __init__(self, max_message_size: int = 1024 * 1024):
        self.ws = Connection(ConnectionType.SERVER)
        self.max_message_size = max_message_size
        self._parts: list[Any] = []  # str or bytes fragments of one message
        self._size = 0
        self._text = False
        self._out = bytearray()
        self.closed: Closed | None = None
        self._buf = b""  # an incomplete frame waiting for more bytes
        self._mid = False  # wsproto is inside a fragmented message
        # A header with a protocol error went to wsproto, which may need more
        # bytes to say so (its payload): from then on every byte goes there.
        self._failing = False
        #: the last receive() stopped at ``max_messages``: call receive(b"") for more
        self.more = False

    def data_to_send(self) -> bytes:
        """Bytes produced so far (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def open(self) -> bool:
        return self.ws.state is ConnectionState.OPEN

    @property
    def close_complete(self) -> bool:
        """Both close frames exchanged: the socket can be closed now."""
        return self.ws.state is ConnectionState.CLOSED

    def receive(self, data: bytes | None, max_messages: int | None = None) -> list[WSEvent]:
        """Feed bytes (``None``: the TCP connection dropped) and return events.

        With ``max_messages``, stop after that many messages and keep the
        rest of the bytes (:attr:`more` tells): a server whose channel is
        full parses no further than it can send, so unsent input stays as
        bytes (bounded by what it read) instead of becoming message objects.
        ``max_messages=0`` only buffers ``data``.
        """
        self.more = False
        if self.closed is not None:
            # Closed already; only watch for the reply to our close frame.
            if data and self.ws.state is ConnectionState.LOCAL_CLOSING:
                self.ws.receive_data(data)
                for _ in self.ws.events():
                    pass
            return []
        if data is None:
            return self._finish(CloseReason.ABNORMAL_CLOSURE, "connection dropped")
        events: list[WSEvent] = []
        if self._failing:
            self._slow(data, events)
            return events
        if self._buf:
            data = bytes(self._buf) + data
            self._buf = b""
        pos, n = 0, len(data)
        budget = -1 if max_messages is None else max_messages
        while n - pos >= 2:
            if not budget:
                self.more = True
                break
            b0, b1 = data[pos], data[pos + 1]
            length, head = b1 & 0x7F, 2
            opcode = b0 & 0x0F
            # Checked on the first two bytes, as wsproto does: a protocol error
            # in the header fails at once, before any extended length arrives
            # (a control frame's 7-bit length above 125 is the 126/127 marker).
            if (b0 & _RSV or not b1 & _MASKED or opcode > _PONG or _BINARY < opcode < _CLOSE
                    or (opcode >= _CLOSE and (length > _MAX_CONTROL_PAYLOAD or not b0 & _FIN))
                    # a continuation outside a fragmented message, or a new
                    # message inside one
                    or (opcode <= _BINARY and (opcode == _CONTINUATION) != self._mid)):
                # A protocol error in the header: let wsproto name it (1002).
                self._failing = True
                self._slow(data[pos:], events)
                return events
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if length > self.max_message_size:
                return self.close(CloseReason.MESSAGE_TOO_BIG,
                                  f"message above {self.max_message_size} bytes", fatal=True)
            end = pos + head + 4 + length
            if end > n:
                break
            if (b0 == _FIN_TEXT or b0 == _FIN_BINARY) and not self._mid:
                # Fast path: a whole unfragmented message in one frame.
                payload = data[pos + head + 4 : end]
                key = data[pos + head : pos + head + 4]
                if key != b"\0\0\0\0":
                    payload = _unmask(payload, key)
                if b0 == _FIN_BINARY:
                    events.append({"bytes": payload})
                    pos = end
                    budget -= 1
                    continue
                try:
                    events.append({"text": payload.decode("utf-8")})
                    pos = end
                    budget -= 1
                    continue
                except UnicodeDecodeError:
                    pass  # wsproto closes with 1007
            if opcode <= _BINARY:  # a data frame: a fragment when FIN is not set
                self._mid = not b0 & _FIN
            before = len(events)
            if self._slow(data[pos:end], events):
                return events
            pos = end
            if len(events) > before and type(events[-1]) is dict:
                budget -= 1
        if pos < n:
            self._buf = data[pos:]  # bounded: the frame's length was checked above
        return events

    def _slow(self, data: bytes, events: list[WSEvent]) -> bool:
        """Hand complete frames (control, fragments, errors) to wsproto.

        Returns True once the WebSocket is closed (stop reading)."""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                if self._message(event, events):
                    return True
            elif isinstance(event, Ping):
                self._out += self.ws.send(event.response())
            elif isinstance(event, Pong):
                events.append(PongReceived())
            elif isinstance(event, CloseConnection):
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    # The client closed: echo its code (1005 "no status" -> 1000).
                    code = (event.code if event.code != CloseReason.NO_STATUS_RCVD
                            else CloseReason.NORMAL_CLOSURE)
                    self._out += self.ws.send(CloseConnection(code=code))
                    events.extend(self._finish(event.code, event.reason or ""))
                else:
                    # A parse failure (1002 protocol error, 1007 bad UTF-8...).
                    events.extend(self.close(event.code, event.reason or "", fatal=True))
                return True
        return False

    def _message(self, event: Message[Any], events: list[WSEvent]) -> bool:
        data = event.data
        size = len(data)
        if self._text or isinstance(event, TextMessage):
            self._text = True
            # A char is at most 4 bytes: only encode when the limit is close.
            if (self._size + 4 * size) > self.max_message_size:
                size = len(data.encode("utf-8"))
        self._size += size
        if self._size > self.max_message_size:
            events.extend(
                self.close(CloseReason.MESSAGE_TOO_BIG,
                           f"message above {self.max_message_size} bytes", fatal=True)
            )
            return True
        if event.message_finished and not self._parts:
            whole = data
        else:
            self._parts.append(data)
            if not event.message_finished:
                return False
            whole = ("" if self._text else b"").join(self._parts)
            self._parts = []
        if self._text:
            events.append({"text": whole})
        else:
            events.append({"bytes": bytes(whole)})
        self._text = False
        self._size = 0
        return False

    def _finish(self, code: int, reason: str, fatal: bool = False) -> list[WSEvent]:
        self.closed = Closed(int(code), reason, fatal)
        self._parts = []
        return [self.closed]

    # ------------------------------------------------------------- output

    def send_text(self, text: str) -> None:
        self._send_frame(_FIN_TEXT, text.encode("utf-8"))

    def send_bytes(self, data: bytes) -> None:
        self._send_frame(_FIN_BINARY, data)

    def _send_frame(self, first: int, payload: bytes) -> None:
        """A whole unmasked server frame, built directly (wsproto's general
        writer costs ~10 us a frame); only while open, as wsproto would check."""
        if self.ws.state is not ConnectionState.OPEN:
            raise LocalProtocolError(f"cannot send a message in state {self.ws.state}")
        size = len(payload)
        out = self._out
        if size < 126:
            out += bytes((first, size))
        elif size < 65536:
            out += bytes((first, 126)) + size.to_bytes(2, "big")
        else:
            out += bytes((first, 127)) + size.to_bytes(8, "big")
        out += payload

    def ping(self, payload: bytes = b"") -> None:
        self._out += self.ws.send(Ping(payload=payload))

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "",
              fatal: bool = False) -> list[WSEvent]:
        """Start a server-side close (send the close frame).

        Returns ``[Closed(code)]`` because the server treats the WebSocket as
        finished from now on (the client's reply is awaited only so the
        socket closes cleanly). Idempotent.
        """
        if self.closed is not None:
            return []
        if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                self._out += self.ws.send(CloseConnection(code=code, reason=reason[:120]))
            except LocalProtocolError:  # pragma: no cover - state checked above
                pass
        return self._finish(code, reason, fatal)

    def send(self, message: dict[str, Any]) -> list[WSEvent]:
        """Apply the text/bytes/close parts of a ``websocket.send`` message.

        Returns events (a :class:`Closed` if it closed). Raises ``ValueError``
        for an invalid message; the caller logs it with the channel name.
        """
        problem = check_send(message)
        if problem:
            raise ValueError(problem)
        return self.apply(message)

    def apply(self, message: dict[str, Any]) -> list[WSEvent]:
        """:meth:`send` for a message already validated with :func:`check_send`
        (the session validates every reply first, to log it with its channel)."""
        if self.closed is not None or not self.open:
            return []
        if "text" in message:
            self.send_text(message["text"])
        elif "bytes" in message:
            self.send_bytes(message["bytes"])
        close = message.get("close", False)
        if close is not False:
            return self.close(CloseReason.NORMAL_CLOSURE if close is True else close)
        return []
