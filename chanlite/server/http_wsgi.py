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
import threading
from typing import TYPE_CHECKING, Protocol

import h11

from .http import error_response

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .http import HTTPCore, RequestHead

# Private: a part of HTTPSession, not an API of its own.
__all__: list[str] = []

log = logging.getLogger("chanlite.server")


class _SessionState(Protocol):
    """What these methods use of their session (an :class:`HTTPSession`).

    The self type of the mixin's methods: the mixin has no state of its own
    but ``_wsgi_drained``, so it cannot declare the session's (``conn``,
    ``status``, ...) without claiming slots it does not hold; mypy instead
    checks that ``HTTPSession`` provides all of this wherever one of these
    methods is called on it."""

    conn: Connection
    core: HTTPCore
    head: RequestHead | None
    status: int
    sent: int
    gone: bool
    _wsgi_drained: threading.Event | None

    def _response_done(self) -> None: ...

    def wsgi_start(self, status: int | str, headers: list[tuple[bytes, bytes]], body: bytes,
                   more: bool) -> None: ...


class _WSGIResponses:
    """WSGI response methods of :class:`HTTPSession` (called on the loop)."""

    # The pool thread waiting for the out-buffer to drain (set on the loop).
    __slots__ = ("_wsgi_drained",)
    _wsgi_drained: threading.Event | None

    def drained(self: _SessionState) -> None:
        """The connection's out-buffer emptied (or it closed): wake the pool
        thread waiting to write more of a streamed body."""
        event = self._wsgi_drained
        if event is not None:
            self._wsgi_drained = None
            event.set()

    def wsgi_start(self: _SessionState, status: int | str, headers: list[tuple[bytes, bytes]],
                   body: bytes, more: bool) -> None:
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

    def wsgi_failed(self: _SessionState) -> None:
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

    def wsgi_body(self: _SessionState, body: bytes, more: bool,
                  drained: threading.Event | None = None) -> None:
        """Write more of a streamed WSGI body; ``drained`` (set by the pool
        thread's wait) is set once the out-buffer has emptied."""
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
