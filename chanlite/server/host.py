"""The seam between sessions and the server: what a session may ask for.

A session (:class:`~chanlite.server.http_session.HTTPSession`,
:class:`~chanlite.server.ws_session.WebSocketSession`) sees the server only
through :class:`SessionHost`, never the :class:`~chanlite.server.server.Server`
class itself. Two reasons: a reader of a session knows exactly which
server state it can touch (the list below, not ~40 attributes), and unit
tests drive a session with a small fake host (``tests/server/fakes.py``)
instead of sockets and threads.

The reply channels a session listens on live in one :class:`ReplyRegistry`
with one rule, stated on the class, for both kinds of session.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer
    from .backpressure import Outbox, Owner
    from .bodies import MemoryBudget, SpooledBody
    from .config import ServerConfig
    from .connection import Connection
    from .http import RequestHead
    from .loop import Loop

__all__ = ["ReplyRegistry", "Session", "SessionHost"]

_ALPHABET = string.ascii_letters + string.digits
_SPACE = len(_ALPHABET) ** 22  # reply-channel suffixes: 22 characters


class Session(Protocol):
    """What a connection feeds bytes to (HTTP or WebSocket), and what the
    server calls on it (replies, shutdown)."""

    #: The connection this session speaks on (the server aborts it when
    #: ``on_reply`` raises).
    conn: Connection

    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> None: ...
    def connection_lost(self) -> None: ...
    def drained(self) -> None: ...
    def on_reply(self, message: dict[str, Any]) -> None: ...

    def drain(self) -> None:
        """The server is shutting down: end this session as its protocol
        allows (an idle keep-alive closes, an open WebSocket closes 1001, a
        request in flight finishes)."""


class ReplyRegistry:
    """Reply channel -> the session listening on it (loop thread only).

    The one rule: a session **listens** on a reply channel from the moment
    the first message naming it is on the layer (the outbox's ``on_sent``:
    before that no consumer can know the name, so nothing can be missed),
    and **forgets** it as soon as it stops wanting replies (response done,
    WebSocket closed, client gone). ``channel in registry`` therefore means
    "a consumer has it and we still listen", which the HTTP session uses to
    decide whether that consumer must hear ``http.disconnect``.
    """

    __slots__ = ("prefix", "_sessions", "get")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._sessions: dict[str, Session] = {}
        #: ``get(channel)``: the listening session or None. The dict's own
        #: method, bound once: the server calls it for every reply delivered.
        self.get: Callable[[str], Session | None] = self._sessions.get

    def new_channel(self) -> str:
        """A reply channel for one connection or request: this process's prefix
        plus 22 random characters (~131 bits from ``secrets``).

        Unguessable, not a counter: a client learns its own reply channel
        (consumers may echo it), and must not be able to name anyone else's
        (to send on it, or to find its channel session).
        """
        while True:
            # One draw of the whole number, then its 22 base-62 digits: the
            # same uniform distribution as 22 secrets.choice() calls, at one
            # urandom read instead of 22 (which were ~1/5 of a handshake's
            # time on the loop).
            n = secrets.randbelow(_SPACE)
            digits = []
            for _ in range(22):
                n, digit = divmod(n, len(_ALPHABET))
                digits.append(_ALPHABET[digit])
            name = self.prefix + "".join(digits)
            if name not in self._sessions:
                return name

    def listen(self, channel: str, session: Session) -> None:
        """Deliver replies on ``channel`` to ``session`` (see the rule above)."""
        self._sessions[channel] = session

    def forget(self, channel: str) -> None:
        """Stop delivering ``channel`` (``""`` or unknown: nothing to do)."""
        if channel:
            self._sessions.pop(channel, None)

    def __contains__(self, channel: object) -> bool:
        return channel in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)


class SessionHost(Protocol):
    """Everything a session (and its :class:`Connection`) uses of the server.

    Implemented by :class:`~chanlite.server.server.Server`. Add a member here
    only when a session really needs it: this list is the seam.
    """

    #: The channel layer: ``max_message_size``, ``new_channel``, best-effort
    #: ``send`` of ``http.disconnect`` (client traffic goes through :meth:`outbox`).
    layer: BaseChannelLayer
    #: The I/O loop: timers, ``call_soon``, socket interest.
    loop: Loop
    config: ServerConfig
    #: Reply channels and who listens on them (one rule, see the class).
    replies: ReplyRegistry
    #: Request body bytes held in memory by all connections together.
    body_memory: MemoryBudget
    #: Shutting down: new WebSockets get 503, keep-alive connections close.
    draining: bool

    def outbox(self, owner: Owner) -> Outbox:
        """A session's ordered, back-pressured way to send to the layer."""
        ...

    def submit_wsgi(self, session: Any, head: RequestHead, body: SpooledBody) -> bool:
        """Queue a WSGI request for the pool; False when the queue is full."""
        ...

    def connection_closed(self, conn: Connection) -> None:
        """``conn`` closed: count it out (accepts may resume)."""
        ...

    def access(self, head: RequestHead, status: int, size: int, client: Any,
               started_at: float | None) -> None:
        """One access-log line for an HTTP response."""
        ...

    def access_websocket(self, event: str, head: RequestHead, client: Any,
                         detail: int | None = None) -> None:
        """One access-log line for a WebSocket event (WSCONNECT, ...)."""
        ...

    def log_limited(self, text: str, *args: Any) -> None:
        """Log a limit being hit at most once a minute."""
        ...

    # Policy: routing and origin decisions (server/policy.py).
    def origin_allowed(self, origin: bytes | None, head: RequestHead) -> bool: ...
    def websocket_refusal(self, content: dict[str, Any]) -> str | None: ...
    def connect_timeout_reason(self) -> str: ...
    def has_http_route(self, head: RequestHead) -> bool: ...
    def routes_http_disconnect(self, path: str) -> bool: ...
