"""The WSGI bridge of an HTTP connection: a pool thread's response, on the loop.

A view runs on a :class:`~chanlite.server.wsgi.WSGIPool` thread; what it
returns reaches the socket through these methods, which the pool schedules
on the I/O loop (``call_soon_threadsafe``). A pool thread streaming a large
body waits for the connection's out-buffer to drain (:meth:`drained`) before
producing more, so a slow client holds one thread, not unbounded memory.
Composed into :class:`~chanlite.server.http_session.HTTPSession`, whose
state (``conn``, ``core``, ``head``, ``status``, ``sent``) it uses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import h11

from .http import error_response

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from .connection import Connection
    from .http import HTTPCore, RequestHead

# Private: a part of HTTPSession, not an API of its own.
__all__: list[str] = []

log = logging.getLogger("chanlite.server")


class _WSGIResponses:
    """WSGI response methods of :class:`HTTPSession` (called on the loop)."""

    __slots__ = ()

    if TYPE_CHECKING:  # pragma: no cover - provided by HTTPSession
        conn: Connection
        core: HTTPCore
        head: RequestHead | None
        status: int
        sent: int
        gone: bool
        _wsgi_drained: threading.Event | None

        def _response_done(self) -> None: ...

    def drained(self) -> None:
        """The connection's out-buffer emptied (or it closed): wake the pool
        thread waiting to write more of a streamed body."""
        event = self._wsgi_drained
        if event is not None:
            self._wsgi_drained = None
            event.set()

    def wsgi_start(self, status: int | str, headers: list, body: bytes, more: bool) -> None:
        """Write a WSGI response head (``status`` may be the WSGI ``"200 OK"``)."""
        if self.conn.closed or self.gone:
            return
        try:
            reason = None
            if isinstance(status, str):
                code, _, text = status.partition(" ")
                status, reason = int(code), text.encode("latin-1")
            data = self.core.response_start(status, headers, body, more, reason)
        except (h11.LocalProtocolError, ValueError) as exc:
            log.error("invalid WSGI response for %s: %s", self.head and self.head.path, exc)
            self.core.must_close = True
            self.conn.write(error_response(500, "invalid response"))
            self.status = 500
            self.conn.close()
            return
        self.status = status
        self.sent += len(body)
        self.conn.write(data)
        if not more:
            self._response_done()

    def wsgi_failed(self) -> None:
        """The pool thread failed outside the application (e.g. headers it
        cannot encode): answer 500, or drop the connection if the response
        has started, so the client is never left waiting."""
        if self.conn.closed or self.gone:
            return
        if self.core.response_started:
            self.conn.abort()
        else:
            self.wsgi_start(500, [(b"content-type", b"text/plain")], b"Internal Server Error\n",
                            False)

    def wsgi_body(self, body: bytes, more: bool, drained=None) -> None:
        if self.conn.closed or self.gone:
            if drained is not None:
                drained.set()
            return
        try:
            data = self.core.response_body(body, more)
        except h11.LocalProtocolError as exc:
            log.error("invalid WSGI body for %s: %s", self.head and self.head.path, exc)
            self.conn.abort()
            if drained is not None:
                drained.set()  # the pool thread must not wait for a drain that never comes
            return
        self.sent += len(body)
        self.conn.write(data)
        if drained is not None:
            if self.conn.buffered:
                self._wsgi_drained = drained
            else:
                drained.set()
        if not more:
            self._response_done()
