"""One WebSocket, from the upgrade request to ``websocket.disconnect``.

Runs on the I/O loop. The handshake is held open (no 101 yet) while a
consumer decides: ``websocket.connect`` goes out with order 0 and the reply
decides - ``accept: True`` or a first text/bytes accepts, ``accept: False``
or ``close`` rejects with 403, and silence past ``websocket_connect_timeout``
rejects too. Once ``websocket.connect`` has been sent, exactly one
``websocket.disconnect`` follows, whatever happens, so consumers can always
leave their groups. An idle WebSocket is this object, a wsproto parser and a
socket: no thread.

States (:class:`WSState`) and timers (:class:`WSTimer`) are explicit, as in
h11 and wsproto::

    CONNECTING --accept--> OPEN --close frame / EOF / error--> CLOSED
        |                                                        ^
        +---------- reject (403/503), EOF, connect timeout ------+

    CONNECT  armed when websocket.connect is on the layer; fires: reject 403
    PING     armed while OPEN (every websocket_ping_interval); fires: ping
    PONG     armed by a ping; a pong cancels it; fires: close 1011
    CLOSE    armed when we sent a close frame; fires: drop the socket

Entering CLOSED cancels every timer; a close we started then arms CLOSE.
The server is reached only through :class:`~chanlite.server.host.SessionHost`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from wsproto.frame_protocol import CloseReason

from ..layers import codec
from ..layers.base import MessageTooLarge
from .websocket import Closed, PongReceived, WebSocketCore, check_send, handshake_action

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .http import HTTPCore, RequestHead
    from .loop import Timer

__all__ = ["WebSocketSession", "WSState", "WSTimer"]

log = logging.getLogger("chanlite.server")


class WSState(enum.Enum):
    """Where one WebSocket is (see the module docstring for the arrows)."""

    CONNECTING = "connecting"  # upgrade request held open, the consumer decides
    OPEN = "open"  # 101 sent: frames flow both ways
    CLOSED = "closed"  # websocket.disconnect sent (or nothing to tell); socket closing


class WSTimer(enum.Enum):
    """The named timers of a WebSocket session (at most one of each)."""

    CONNECT = "connect"  # websocket_connect_timeout: the consumer did not decide
    PING = "ping"  # websocket_ping_interval: time to ping
    PONG = "pong"  # websocket_ping_timeout: no pong since our ping
    CLOSE = "close"  # websocket_close_timeout: no close reply from the client


# The per-message path compares states against these module globals: an
# attribute of an Enum class costs 0.1-0.2 µs to look up on Python 3.11
# (several per echoed message), a global ~20 ns.
CONNECTING, OPEN, CLOSED = WSState.CONNECTING, WSState.OPEN, WSState.CLOSED


_EARLY_LIMIT = 64 * 1024  # bytes read before the 101 (clients should send none)
_PARSE_BATCH = 32  # messages parsed per step: no more than a full channel can refuse


def envelope_size(reply_channel: str, path: str) -> int:
    """Encoded bytes a ``websocket.receive`` adds around its payload.

    ``text``/``bytes`` of N bytes encode as N plus a 5-byte (str32/bin32)
    header at most; ``order`` is counted at its largest (9 bytes). The
    layer's ``max_message_size`` minus this is the largest payload that can
    always be delivered on this connection.
    """
    base = {"reply_channel": reply_channel, "path": path, "order": 2**63 - 1}
    return max(len(codec.encode({"text": "", **base})) + 4,   # fixstr 1 byte -> str32 5
               len(codec.encode({"bytes": b"", **base})) + 3)  # bin8 2 bytes -> bin32 5


class WebSocketSession:
    """Bridges one WebSocket connection and the channel layer."""

    __slots__ = (
        "conn", "host", "head", "core", "ws", "state", "reply_channel", "timers",
        "connect_sent", "disconnect_sent", "outbox",
    )

    def __init__(self, conn: Connection, head: RequestHead, core: HTTPCore) -> None:
        self.conn = conn
        self.host = conn.host
        self.head = head
        self.core: HTTPCore | None = core  # only until the 101 is sent
        self.ws: WebSocketCore | None = None
        self.state = CONNECTING
        self.reply_channel = ""
        #: The armed timers, by name (a fired or cancelled one is removed).
        self.timers: dict[WSTimer, Timer] = {}
        self.connect_sent = False
        self.disconnect_sent = False
        # Messages to the layer, in order; waits (not drops) when a channel is full.
        self.outbox = self.host.outbox(self)

    @property
    def order(self) -> int:
        """``order`` of the last ``websocket.receive`` sent to the layer."""
        return self.outbox.order

    # ----------------------------------------------------------- handshake

    def start(self) -> None:
        host = self.host
        if host.draining:
            self._reject(503)
            return
        if not host.origin_allowed(self.head.header(b"origin"), self.head):
            log.warning("WebSocket to %s rejected: origin %s not allowed (ALLOWED_HOSTS or "
                        "CHANLITE_SERVER['allowed_origins'])", self.head.path,
                        (self.head.header(b"origin") or b"").decode("latin-1"))
            self._reject(403)
            return
        self.reply_channel = host.replies.new_channel()
        message = {
            "reply_channel": self.reply_channel,
            "path": self.head.path,
            "headers": [[k, v] for k, v in self.head.headers],
            "query_string": self.head.query_string,
            "root_path": self.head.root_path,
            "scheme": "wss" if self.head.scheme in ("https", "wss") else "ws",
            "client": self.head.client,
            "server": self.conn.server_addr,
            "order": 0,
        }
        refusal = host.websocket_refusal(message)
        if refusal is not None:
            log.warning("WebSocket %s rejected (403): %s", self.head.path, refusal)
            self._reject(403)
            return
        # Keep reading while the consumer decides (or while websocket.connect
        # waits for room), so a client that leaves is noticed now
        # (eof_received), not at a timeout. Bytes sent before our 101 wait in
        # h11's buffer (bounded: data_received).
        try:
            self.outbox.send("websocket.connect", message, on_sent=self._connect_sent)
        except MessageTooLarge as exc:
            log.error("cannot send websocket.connect for %s (%s): refusing with 503",
                      self.head.path, exc)
            self._reject(503)

    def _connect_sent(self, message: dict[str, Any]) -> None:
        # A consumer may know the reply channel from now on: listen (the registry's rule).
        self.host.replies.listen(self.reply_channel, self)
        self.connect_sent = True
        self._arm(WSTimer.CONNECT, self.host.config.websocket_connect_timeout,
                  self._connect_timeout)

    def _connect_timeout(self) -> None:
        if self.state is CONNECTING:
            log.warning("WebSocket %s not accepted within %ss: rejecting with 403. Either %s",
                        self.head.path, self.host.config.websocket_connect_timeout,
                        self.host.connect_timeout_reason())
            self._reject(403)

    # -------------------------------------------------------------- timers

    def _arm(self, name: WSTimer, delay: float, callback: Callable[[], None],
             guarded: bool = True) -> None:
        """(Re)arm timer ``name``; when it fires it is removed, then ``callback``
        runs (``guarded``: an exception closes this connection only)."""
        self._cancel(name)
        self.timers[name] = self.host.loop.call_later(delay, partial(self._fire, name, callback,
                                                                    guarded))

    def _fire(self, name: WSTimer, callback: Callable[[], None], guarded: bool) -> None:
        self.timers.pop(name, None)
        if guarded:
            self.conn.guard(callback)
        else:
            callback()

    def _cancel(self, name: WSTimer) -> None:
        timer = self.timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _cancel_all(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def message_limit(self) -> int:
        """The largest message this connection accepts (close 1009 above it):
        ``websocket_max_message_size``, or by default what the layer's
        ``max_message_size`` leaves after this connection's envelope."""
        room = self.host.layer.max_message_size - envelope_size(self.reply_channel,
                                                                 self.head.path)
        configured = self.host.config.websocket_max_message_size
        return room if configured is None else min(configured, room)

    def _reject(self, status: int) -> None:
        assert self.core is not None
        self.conn.write(self.core.reject_websocket(status))
        self.host.access_websocket("WSREJECT", self.head, self.conn.client, status)
        self._closed(CloseReason.ABNORMAL_CLOSURE)
        self.conn.close()

    def _accept(self) -> None:
        assert self.core is not None
        data, trailing = self.core.accept_websocket()
        self.core = None
        self.state = OPEN
        self.ws = WebSocketCore(self.message_limit())
        self._cancel(WSTimer.CONNECT)
        self.conn.write(data)
        self.host.access_websocket("WSCONNECT", self.head, self.conn.client)
        self._schedule_ping()
        self.conn.resume_reading()
        if trailing:
            self.host.loop.call_soon(self.conn.guard, self._feed, trailing)

    # --------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.state is CONNECTING:
            core = self.core
            if core is not None:
                core.receive(data)  # handed over as the first frames on accept
                if core.buffered > _EARLY_LIMIT:
                    self.conn.pause_reading()  # EOF goes unnoticed from here on
            return
        self._feed(data)

    def _feed(self, data: bytes | None) -> None:
        ws = self.ws
        if ws is None or self.conn.closed:
            return
        outbox = self.outbox
        if outbox.blocked and self.state is OPEN and data is not None:
            ws.receive(data, max_messages=0)  # keep the bytes; parse when there is room
            return
        while True:
            events = ws.receive(data, max_messages=_PARSE_BATCH)
            data = b""
            if self.state is CLOSED:
                if ws.close_complete:
                    self.conn.close()
                return
            for event in events:
                if type(event) is dict:
                    event["reply_channel"] = self.reply_channel
                    event["path"] = self.head.path
                    try:
                        # "order" is given when really sent: websocket.disconnect's
                        # order must follow the last delivered receive (strict
                        # ordering waits for every number).
                        outbox.send("websocket.receive", event, numbered=True)
                    except MessageTooLarge:
                        self._apply_events(ws.close(CloseReason.MESSAGE_TOO_BIG,
                                                    "message too big for the channel layer"))
                        break
                elif type(event) is PongReceived:
                    self._cancel(WSTimer.PONG)
                else:
                    self._apply_events([event])
            self._flush()
            if not ws.more or outbox.blocked or self.state is not OPEN or self.conn.closed:
                return

    # ---------------------------------------------------- back-pressure

    def layer_blocked(self) -> None:
        """A channel is full: stop reading this socket (TCP pushes back on the
        client). While connecting, keep reading: a client that leaves must
        still be noticed, and early bytes are bounded anyway."""
        if self.state is OPEN:
            self.conn.pause_reading()

    def layer_unblocked(self) -> None:
        """Everything waiting went out: parse what is buffered, read again."""
        if self.state is not OPEN or self.conn.closed:
            return
        self._feed(b"")
        if not self.outbox.blocked and self.state is OPEN:
            self.conn.resume_reading()

    def layer_timeout(self, channel: str, dropped: list[tuple[str, dict[str, Any]]]) -> None:
        """``channel`` stayed full for ``backpressure_timeout`` (the server logs
        a count per interval): 503 for a handshake, 1013 for an open socket."""
        if self.state is CONNECTING:
            self._reject(503)
        elif self.state is OPEN and self.ws is not None:
            self._apply_events(self.ws.close(CloseReason.TRY_AGAIN_LATER, "try again later"))
            self._flush()

    def layer_send_failed(self, channel: str, message: dict[str, Any], exc: Exception) -> None:
        if isinstance(exc, MessageTooLarge) and self.state is OPEN and self.ws is not None:
            self._apply_events(self.ws.close(CloseReason.MESSAGE_TOO_BIG,
                                             "message too big for the channel layer"))
            self._flush()
            return
        log.error("cannot send %s for %s: %s", channel, self.reply_channel or self.head.path, exc)
        if self.state is not CLOSED:
            self.conn.abort()

    def eof_received(self) -> None:
        if self.state is CONNECTING:
            self._closed(CloseReason.ABNORMAL_CLOSURE)
            self.conn.close()
        else:
            self._feed(None)
            self.conn.close()

    def drained(self) -> None:
        pass

    def drain(self) -> None:
        """Server shutdown: close 1001 (a pending handshake is refused 503)."""
        self.close(CloseReason.GOING_AWAY)

    # -------------------------------------------------------------- output

    def on_reply(self, message: dict[str, Any]) -> None:
        problem = check_send(message)
        if problem:
            if self.state is CONNECTING:
                # Waiting for the connect timeout would only leave the client
                # hanging: this consumer's answer is broken, so refuse now.
                log.error("invalid reply to the WebSocket handshake for %s on %s: %s; "
                          "rejecting with 403", self.head.path, self.reply_channel, problem)
                self._reject(403)
                return
            log.error("invalid websocket.send for %s on %s: %s; dropped",
                      self.head.path, self.reply_channel, problem)
            return
        if self.state is CONNECTING:
            # Daphne 1.x: before the 101, ``close`` with an integer rejects
            # (the code cannot reach the client: an HTTP refusal has none).
            # A close code no close frame may carry is an invalid reply, refused
            # above with the others: no refusal goes unlogged.
            action = handshake_action(message)
            if action == "reject":
                self._reject(403)
                return
            if action == "accept":
                self._accept()
            else:
                return  # e.g. {"accept": None}: nothing to do yet
        if self.state is not OPEN or self.ws is None:
            return
        self._apply_events(self.ws.apply(message))  # validated above
        self._flush()

    def _apply_events(self, events: list[Any]) -> None:
        for event in events:
            if type(event) is Closed:
                self._closed(event.code)
                self._flush()
                ws = self.ws
                if ws is not None and (ws.close_complete or event.fatal
                                       or event.code == CloseReason.ABNORMAL_CLOSURE):
                    self.conn.close()
                else:
                    # We sent our close frame: give the client a moment to reply
                    # (and read it, even if back-pressure had paused reading).
                    self._arm(WSTimer.CLOSE, self.host.config.websocket_close_timeout,
                              self.conn.abort, guarded=False)
                    self.conn.resume_reading()

    def _flush(self) -> None:
        if self.ws is not None:
            data = self.ws.data_to_send()
            if data:
                self.conn.write(data)

    def close(self, code: int = CloseReason.NORMAL_CLOSURE) -> None:
        """Server-initiated close (shutdown uses 1001, :meth:`drain`)."""
        if self.state is CONNECTING:
            self._reject(503)
        elif self.state is OPEN and self.ws is not None:
            self._apply_events(self.ws.close(code))

    # ----------------------------------------------------------- keepalive

    def _schedule_ping(self) -> None:
        interval = self.host.config.websocket_ping_interval
        if interval:
            self._arm(WSTimer.PING, interval, self._ping)

    def _ping(self) -> None:
        if self.state is not OPEN or self.ws is None:
            return
        self.ws.ping(b"chanlite")
        self._flush()
        if WSTimer.PONG not in self.timers and self.host.config.websocket_ping_timeout:
            self._arm(WSTimer.PONG, self.host.config.websocket_ping_timeout, self._pong_timeout)
        self._schedule_ping()

    def _pong_timeout(self) -> None:
        if self.state is OPEN and self.outbox.blocked:
            # Back-pressure stopped reading: the pong may be waiting unread.
            # The backpressure timeout bounds this wait, not the ping timeout.
            self._arm(WSTimer.PONG, self.host.config.websocket_ping_timeout, self._pong_timeout)
            return
        if self.state is OPEN and self.ws is not None:
            log.info("WebSocket %s: no pong in time, closing 1011", self.reply_channel)
            self._apply_events(self.ws.close(CloseReason.INTERNAL_ERROR, "ping timeout"))
            self._flush()

    # ------------------------------------------------------------- cleanup

    def _closed(self, code: int) -> None:
        """Enter CLOSED: report ``websocket.disconnect`` once, stop every timer
        and stop listening for replies."""
        if self.state is OPEN:
            self.host.access_websocket("WSDISCONNECT", self.head, self.conn.client, int(code))
        self.state = CLOSED
        self._cancel_all()
        self.host.replies.forget(self.reply_channel)
        if not self.connect_sent:
            self.outbox.discard()  # a websocket.connect still waiting for room
            return
        if self.disconnect_sent:
            return
        self.disconnect_sent = True
        try:
            # Behind any receives still waiting for room; waits itself if full.
            self.outbox.send("websocket.disconnect", {
                "reply_channel": self.reply_channel,
                "path": self.head.path,
                "code": int(code),
            }, numbered=True)
        except Exception:
            # Callers close the socket after this; a failing layer must not stop them.
            log.exception("cannot send websocket.disconnect for %s", self.reply_channel)

    def connection_lost(self) -> None:
        if self.state is not CLOSED:
            self._closed(CloseReason.ABNORMAL_CLOSURE)
        self._cancel_all()  # the CLOSE timer, if the client never replied

