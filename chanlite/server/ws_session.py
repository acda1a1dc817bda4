"""One WebSocket, from the upgrade request to ``websocket.disconnect``.

Runs on the I/O loop. The handshake is held open (no 101 yet) while a
consumer decides: ``websocket.connect`` goes out with order 0 and the reply
decides - ``accept: True`` or a first text/bytes accepts, ``accept: False``
or ``close`` rejects with 403, and silence past ``websocket_connect_timeout``
rejects too. Once ``websocket.connect`` has been sent, exactly one
``websocket.disconnect`` follows, whatever happens, so consumers can always
leave their groups. An idle WebSocket is this object, a wsproto parser and a
socket: no thread.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..layers.base import ChannelFull, MessageTooLarge
from .websocket import Closed, PongReceived, WebSocketCore, check_send

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .http import HTTPCore, RequestHead
    from .loop import Timer

__all__ = ["WebSocketSession"]

log = logging.getLogger("chanlite.server")

CONNECTING, OPEN, CLOSED = 0, 1, 2
_EARLY_LIMIT = 64 * 1024  # bytes read before the 101 (clients should send none)


class WebSocketSession:
    """Bridges one WebSocket connection and the channel layer."""

    __slots__ = (
        "conn", "server", "head", "core", "ws", "state", "reply_channel", "order", "timer",
        "pong_timer", "disconnect_sent",
    )

    def __init__(self, conn: Connection, head: RequestHead, core: HTTPCore) -> None:
        self.conn = conn
        self.server = conn.server
        self.head = head
        self.core: HTTPCore | None = core  # only until the 101 is sent
        self.ws: WebSocketCore | None = None
        self.state = CONNECTING
        self.reply_channel = ""
        self.order = 0
        self.timer: Timer | None = None
        self.pong_timer: Timer | None = None
        self.disconnect_sent = True  # until websocket.connect is sent

    # ----------------------------------------------------------- handshake

    def start(self) -> None:
        server = self.server
        if server.draining:
            self._reject(503)
            return
        if not server.origin_allowed(self.head.header(b"origin")):
            log.warning("WebSocket to %s rejected: origin %s not allowed (ALLOWED_HOSTS or "
                        "CHANLITE_SERVER['allowed_origins'])", self.head.path,
                        (self.head.header(b"origin") or b"").decode("latin-1"))
            self._reject(403)
            return
        self.reply_channel = server.new_reply_channel()
        server.replies[self.reply_channel] = self
        message = {
            "reply_channel": self.reply_channel,
            "path": self.head.path,
            "headers": [[k, v] for k, v in self.head.headers],
            "query_string": self.head.query_string,
            "client": self.conn.client,
            "server": self.conn.server_addr,
            "order": 0,
        }
        try:
            server.layer.send("websocket.connect", message)
        except (ChannelFull, MessageTooLarge) as exc:
            log.error("cannot send websocket.connect for %s (%s): refusing with 503",
                      self.head.path, exc)
            self._forget_reply()
            self._reject(503)
            return
        self.disconnect_sent = False
        self.timer = server.loop.call_later(
            server.config.websocket_connect_timeout, partial(self.conn.guard, self._connect_timeout)
        )
        # Keep reading while the consumer decides, so a client that leaves is
        # noticed now (eof_received), not at the connect timeout. Bytes sent
        # before our 101 wait in h11's buffer (bounded: data_received).

    def _connect_timeout(self) -> None:
        self.timer = None
        if self.state == CONNECTING:
            log.warning("WebSocket %s not accepted within %ss: rejecting with 403",
                        self.head.path, self.server.config.websocket_connect_timeout)
            self._reject(403)

    def _reject(self, status: int) -> None:
        assert self.core is not None
        self.conn.write(self.core.reject_websocket(status))
        self.server.access_websocket("WSREJECT", self.head, self.conn.client, status)
        self._closed(1006)
        self.conn.close()

    def _accept(self) -> None:
        assert self.core is not None
        data, trailing = self.core.accept_websocket()
        self.core = None
        self.state = OPEN
        self.ws = WebSocketCore(self.server.config.websocket_max_message_size)
        self._cancel_timer()
        self.conn.write(data)
        self.server.access_websocket("WSCONNECT", self.head, self.conn.client)
        self._schedule_ping()
        self.conn.resume_reading()
        if trailing:
            self.server.loop.call_soon(self.conn.guard, self._feed, trailing)

    # --------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.state == CONNECTING:
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
        events = ws.receive(data)
        if self.state == CLOSED:
            if ws.close_complete:
                self.conn.close()
            return
        for event in events:
            if type(event) is dict:
                event["reply_channel"] = self.reply_channel
                event["path"] = self.head.path
                event["order"] = self.order + 1
                try:
                    self.server.layer.send("websocket.receive", event)
                    # Counted only once sent: websocket.disconnect's order must
                    # follow the last delivered receive (strict ordering waits
                    # for every number).
                    self.order += 1
                except ChannelFull:
                    log.error("websocket.receive is full: closing %s with 1013", self.reply_channel)
                    self._apply_events(ws.close(1013, "try again later"))
                    break
                except MessageTooLarge:
                    self._apply_events(ws.close(1009, "message too big for the channel layer"))
                    break
            elif type(event) is PongReceived:
                if self.pong_timer is not None:
                    self.pong_timer.cancel()
                    self.pong_timer = None
            else:
                self._apply_events([event])
        self._flush()

    def eof_received(self) -> None:
        if self.state == CONNECTING:
            self._closed(1006)
            self.conn.close()
        else:
            self._feed(None)
            self.conn.close()

    def drained(self) -> None:
        pass

    # -------------------------------------------------------------- output

    def on_reply(self, message: dict) -> None:
        problem = check_send(message)
        if problem:
            log.error("invalid websocket.send on %s: %s", self.reply_channel, problem)
            return
        if self.state == CONNECTING:
            accept = message.get("accept")
            if accept is False or (
                message.get("close", False) is not False
                and accept is not True
                and "text" not in message
                and "bytes" not in message
            ):
                self._reject(403)
                return
            if accept is True or "text" in message or "bytes" in message:
                self._accept()
            else:
                return  # e.g. {"accept": None}: nothing to do yet
        if self.state != OPEN or self.ws is None:
            return
        self._apply_events(self.ws.apply(message))  # validated above
        self._flush()

    def _apply_events(self, events: list) -> None:
        for event in events:
            if type(event) is Closed:
                self._closed(event.code)
                self._flush()
                ws = self.ws
                if ws is not None and (ws.close_complete or event.fatal or event.code == 1006):
                    self.conn.close()
                else:
                    # We sent our close frame: give the client a moment to reply.
                    self.timer = self.server.loop.call_later(
                        self.server.config.websocket_close_timeout, self.conn.abort
                    )

    def _flush(self) -> None:
        if self.ws is not None:
            data = self.ws.data_to_send()
            if data:
                self.conn.write(data)

    def close(self, code: int = 1000) -> None:
        """Server-initiated close (shutdown uses 1001)."""
        if self.state == CONNECTING:
            self._reject(503)
        elif self.state == OPEN and self.ws is not None:
            self._apply_events(self.ws.close(code))

    # ----------------------------------------------------------- keepalive

    def _schedule_ping(self) -> None:
        interval = self.server.config.websocket_ping_interval
        if interval:
            self.timer = self.server.loop.call_later(interval, partial(self.conn.guard, self._ping))

    def _ping(self) -> None:
        self.timer = None
        if self.state != OPEN or self.ws is None:
            return
        self.ws.ping(b"chanlite")
        self._flush()
        if self.pong_timer is None and self.server.config.websocket_ping_timeout:
            self.pong_timer = self.server.loop.call_later(
                self.server.config.websocket_ping_timeout,
                partial(self.conn.guard, self._pong_timeout),
            )
        self._schedule_ping()

    def _pong_timeout(self) -> None:
        self.pong_timer = None
        if self.state == OPEN and self.ws is not None:
            log.info("WebSocket %s: no pong in time, closing 1011", self.reply_channel)
            self._apply_events(self.ws.close(1011, "ping timeout"))
            self._flush()

    # ------------------------------------------------------------- cleanup

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _forget_reply(self) -> None:
        if self.reply_channel:
            self.server.replies.pop(self.reply_channel, None)

    def _closed(self, code: int) -> None:
        """Report ``websocket.disconnect`` once and stop listening for replies."""
        if self.state == OPEN:
            self.server.access_websocket("WSDISCONNECT", self.head, self.conn.client, int(code))
        self.state = CLOSED
        self._cancel_timer()
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self._forget_reply()
        if self.disconnect_sent:
            return
        self.disconnect_sent = True
        try:
            self.server.layer.send("websocket.disconnect", {
                "reply_channel": self.reply_channel,
                "path": self.head.path,
                "code": int(code),
                "order": self.order + 1,
            })
        except ChannelFull:
            log.error("websocket.disconnect is full: dropped for %s", self.reply_channel)
        except Exception:
            # Callers close the socket after this; a failing layer must not stop them.
            log.exception("cannot send websocket.disconnect for %s", self.reply_channel)

    def connection_lost(self) -> None:
        self._cancel_timer()
        if self.state != CLOSED:
            self._closed(1006)
        elif self.pong_timer is not None:
            self.pong_timer.cancel()


def origin_host(origin: bytes | None) -> str | None:
    """The host part of an ``Origin`` header: ``None`` if absent (not a browser,
    so nothing to protect), ``""`` if opaque (``null``) or unparsable."""
    if origin is None:
        return None
    if origin == b"null":
        return ""
    try:
        return urlsplit(origin.decode("latin-1")).hostname or ""
    except ValueError:
        return ""
