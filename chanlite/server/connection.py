"""One accepted socket: non-blocking reads and writes, owned by the I/O loop.

A :class:`Connection` knows bytes, not protocols: it reads into its current
*session* (HTTP first, WebSocket after an upgrade) and writes what sessions
give it. Writes go straight to the socket when nothing is queued - one
``send`` per response in the common case, which together with TCP_NODELAY
avoids the delayed-ACK stall of multi-write responses. Unsent bytes are
bounded by ``max_outbound_buffer``: a client that does not read is dropped
instead of growing our memory.
"""

from __future__ import annotations

import itertools
import logging
import selectors
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .host import Session

if TYPE_CHECKING:  # pragma: no cover
    from .host import SessionHost

# Session lives in host.py (the seam); re-exported here where it was first defined.
__all__ = ["Connection", "Session"]

log = logging.getLogger("chanlite.server")
READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
_ids = itertools.count(1)


class Connection:
    """A client socket plus its outbound buffer and current session."""

    __slots__ = (
        "host", "sock", "id", "client", "server_addr", "session", "_out", "_interest",
        "closing", "closed", "reading",
    )

    def __init__(self, host: SessionHost, sock: socket.socket, client: list[Any] | None,
                 server_addr: list[Any] | None,
                 session: Callable[[Connection], Session]) -> None:
        """``session`` makes the first session (``HTTPSession``) for this
        connection; an upgrade replaces it later (``conn.session = ...``)."""
        self.host = host
        self.sock = sock
        self.id = next(_ids)
        self.client = client
        self.server_addr = server_addr
        self._out = bytearray()
        self._interest = READ
        self.closing = False  # close once the buffer is flushed
        self.closed = False
        self.reading = True
        self.session: Session = session(self)
        host.loop.add_reader(sock, self.on_ready)

    # ------------------------------------------------------------- events

    def on_ready(self, mask: int) -> None:
        try:
            if mask & WRITE:
                self._flush()
            if mask & READ and not self.closed:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self.abort()
                    return
                if data:
                    self.session.data_received(data)
                else:
                    self.pause_reading()
                    self.session.eof_received()
        except Exception:
            # A bug, or a channel layer failing in an unexpected way: the
            # session's state is unknown, and it may have cancelled its
            # timers, so leaving the socket open could hang the client for
            # ever. Drop this connection only (its consumer still gets its
            # http.disconnect / websocket.disconnect from connection_lost).
            log.exception("error on connection %s from %s; closing it", self.id, self.client)
            self.abort()

    def guard(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a step of this connection's work that the loop calls outside
        :meth:`on_ready` (``call_soon``, timers) with the same isolation: an
        exception is logged and closes this connection only."""
        try:
            callback(*args)
        except Exception:
            log.exception("error on connection %s from %s; closing it", self.id, self.client)
            self.abort()

    # ------------------------------------------------------------- output

    @property
    def buffered(self) -> int:
        """Bytes accepted by :meth:`write` but not yet sent."""
        return len(self._out)

    def write(self, data: bytes) -> None:
        """Send ``data`` now if possible; queue the rest (bounded)."""
        if self.closed or not data:
            return
        if not self._out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._out += data
        if len(self._out) > self.host.config.max_outbound_buffer:
            log.warning(
                "closing connection %s from %s: client is not reading (%d bytes unsent, "
                "max_outbound_buffer=%d)", self.id, self.client, len(self._out),
                self.host.config.max_outbound_buffer,
            )
            self.abort()
            return
        self._set_interest(self._interest | WRITE)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.abort()
            return
        del self._out[:sent]
        if not self._out:
            self._set_interest(self._interest & ~WRITE)
            if self.closing:
                self._close_now()
                return
            if not self.closed:
                self.session.drained()

    def _set_interest(self, events: int) -> None:
        if events != self._interest and not self.closed:
            self._interest = events
            self.host.loop.modify(self.sock, events, self.on_ready)

    def pause_reading(self) -> None:
        """Stop reading (back-pressure, or after EOF) without closing."""
        if self.reading:
            self.reading = False
            self._set_interest(self._interest & ~READ)

    def resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self._set_interest(self._interest | READ)

    # -------------------------------------------------------------- close

    def close(self) -> None:
        """Close after everything written so far has been sent."""
        if self.closed:
            return
        if self._out:
            self.closing = True
            self.pause_reading()
        else:
            self._close_now()

    def abort(self) -> None:
        """Close now, dropping unsent bytes (client gone or misbehaving)."""
        self._out.clear()
        self._close_now()

    def _close_now(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._interest:  # else already unregistered (paused, EOF): a selector's
            # KeyError for an unknown socket formats its repr (two syscalls), ~7 µs
            self.host.loop.remove(self.sock)
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass
        self.host.connection_closed(self)
        try:
            self.session.connection_lost()
        except Exception:
            log.exception("error cleaning up connection %s", self.id)
