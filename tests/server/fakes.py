"""A fake host, loop and socket for driving server sessions without sockets or threads.

In h11's style: the tests feed bytes into a real :class:`Connection` (whose
socket is a :class:`FakeSocket`), deliver reply messages as the server's
reply pump would, move a fake clock forward, and assert the bytes written,
the messages on a real in-memory channel layer, and the timers armed.
Everything but the socket, the loop's clock and the server itself is the
production code: HTTPCore/h11, WebSocketCore/wsproto, Outbox/LayerSender,
ReplyRegistry.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
from collections import deque
from collections.abc import Callable
from typing import Any

from chanlite.layers.base import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.server.backpressure import LayerSender, Outbox, Owner
from chanlite.server.bodies import MemoryBudget, SpooledBody
from chanlite.server.config import ServerConfig
from chanlite.server.connection import Connection, Session
from chanlite.server.host import ReplyRegistry
from chanlite.server.http import RequestHead
from chanlite.server.http_session import HTTPSession
from chanlite.server.loop import Timer

READ = selectors.EVENT_READ
PREFIX = "test.response.fake!"


class FakeLoop:
    """The loop's interface with a clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self.interest: dict[Any, int] = {}

    def time(self) -> float:
        return self.now

    # sockets: only the interest is recorded (the test calls on_ready itself)
    def add_reader(self, sock: Any, callback: Callable[[int], Any]) -> None:
        self.interest[sock] = READ

    def modify(self, sock: Any, events: int, callback: Callable[[int], Any]) -> None:
        if events:
            self.interest[sock] = events
        else:
            self.interest.pop(sock, None)

    def remove(self, sock: Any) -> None:
        self.interest.pop(sock, None)

    # timers and hand-over
    def call_later(self, delay: float, callback: Callable[[], Any]) -> Timer:
        timer = Timer(self.now + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.calls.append((callback, args))

    call_soon_threadsafe = call_soon

    def run_ready(self) -> None:
        """Run every ``call_soon`` callback (and those they schedule)."""
        while self.calls:
            callback, args = self.calls.popleft()
            callback(*args)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers in order (each at its own time)."""
        target = self.now + seconds
        self.run_ready()
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback()
            self.run_ready()
        self.now = target

    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)


class FakeSocket:
    """What :class:`Connection` uses of a socket: bytes in, bytes out."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.eof = False
        self.sent = bytearray()
        self.closed = False
        self.accept = 1 << 30  # bytes send() takes per call (lower it to fill the buffer)

    def recv(self, size: int) -> bytes:
        if self.inbox:
            data = bytes(self.inbox[:size])
            del self.inbox[:size]
            return data
        if self.eof:
            return b""
        raise BlockingIOError

    def send(self, data: bytes | bytearray) -> int:
        taken = bytes(data[: self.accept])
        self.sent += taken
        return len(taken)

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        """Bytes the server wrote since the last take()."""
        data = bytes(self.sent)
        self.sent.clear()
        return data


class FakeHost:
    """A :class:`SessionHost` with recorded decisions and a real in-memory layer."""

    def __init__(self, layer: BaseChannelLayer | None = None, **config: Any) -> None:
        self.layer: BaseChannelLayer = layer or InMemoryChannelLayer()
        self.loop = FakeLoop()
        self.config = ServerConfig(**config)
        self.replies = ReplyRegistry(PREFIX)
        self.body_memory = MemoryBudget(self.config.max_body_memory)
        self.draining = False
        self.sender = LayerSender(self.layer, self.loop, self.config.backpressure_timeout)  # type: ignore[arg-type]
        # What the tests set and read:
        self.origin_ok = True
        self.refusal: str | None = None
        self.http_paths: set[str] = set()  # paths with an http.request route
        self.wsgi_jobs: list[tuple[Any, RequestHead, SpooledBody]] = []
        self.wsgi_room = True  # False: the WSGI pool's queue is full (max_queued_requests)
        self.access_lines: list[tuple[Any, ...]] = []
        self.access_details: list[tuple[Any, float | None]] = []  # (client, started_at) of each
        self.access_clients: list[Any] = []  # the client of each WebSocket access line
        self.closed: list[Connection] = []
        self.origins_checked: list[tuple[bytes | None, str]] = []  # (Origin, path) asked about
        self.refusals_asked: list[dict[str, Any]] = []  # websocket.connect messages checked

    # --- SessionHost
    def outbox(self, owner: Owner) -> Outbox:
        return self.sender.outbox(owner)

    def submit_wsgi(self, session: Any, head: RequestHead, body: SpooledBody) -> bool:
        if not self.wsgi_room:
            return False
        self.wsgi_jobs.append((session, head, body))
        return True

    def connection_closed(self, conn: Connection) -> None:
        self.closed.append(conn)

    def access(self, head: RequestHead, status: int, size: int, client: Any,
               started_at: float | None) -> None:
        self.access_lines.append((head.method, head.path, status, size))
        self.access_details.append((client, started_at))

    def access_websocket(self, event: str, head: RequestHead, client: Any,
                         detail: int | None = None) -> None:
        self.access_lines.append((event, head.path, detail))
        self.access_clients.append(client)

    def log_limited(self, text: str, *args: Any) -> None:
        self.access_lines.append(("LIMIT", text % args))

    def origin_allowed(self, origin: bytes | None, head: RequestHead) -> bool:
        self.origins_checked.append((origin, head.path))
        return self.origin_ok

    def websocket_refusal(self, content: dict[str, Any]) -> str | None:
        self.refusals_asked.append(content)
        return self.refusal

    def connect_timeout_reason(self) -> str:
        return "no consumer in this test"

    def has_http_route(self, head: RequestHead) -> bool:
        return head.path in self.http_paths

    def routes_http_disconnect(self, path: str) -> bool:
        return path in self.http_paths

    # --- what the server's reply pump and loop do
    def reply(self, channel: str, message: dict[str, Any]) -> bool:
        """Deliver ``message`` as ``Server._deliver`` does; False if nobody listens."""
        session = self.replies.get(channel)
        if session is None:
            return False
        session.on_reply(message)
        self.loop.run_ready()
        return True

    def connect(self, client: list[Any] | None = None) -> Client:
        """A new connection, as ``Server._accept`` makes it (HTTP first)."""
        sock = FakeSocket()
        conn = Connection(self, sock, client or ["10.0.0.1", 50000], ["127.0.0.1", 8000],  # type: ignore[arg-type]
                          HTTPSession)
        return Client(self, conn, sock)

    def received(self, channel: str) -> dict[str, Any] | None:
        """The next message on ``channel`` (None: empty)."""
        got, message = self.layer.receive([channel], block=False)
        return message if got is not None else None


class Client:
    """One fake client socket: feed bytes, read what the server wrote."""

    def __init__(self, host: FakeHost, conn: Connection, sock: FakeSocket) -> None:
        self.host = host
        self.conn = conn
        self.sock = sock

    @property
    def session(self) -> Session:
        return self.conn.session

    def send(self, data: bytes) -> None:
        self.sock.inbox += data
        while self.sock.inbox and not self.conn.closed and self.conn.reading:
            self.conn.on_ready(READ)
        self.host.loop.run_ready()

    def send_after_pause(self, data: bytes) -> None:
        """``data`` read by one readiness event the selector reported before
        reading was paused: the loop runs every event of a ``select()`` batch,
        and a callback handed over from another thread (a reply, a retry) may
        pause reading in between, so one more read still reaches the session."""
        assert not self.conn.reading, "reading is not paused: use send()"
        self.sock.inbox += data
        self.conn.on_ready(READ)
        self.host.loop.run_ready()

    def send_eof(self) -> None:
        self.sock.eof = True
        if self.conn.reading:
            self.conn.on_ready(READ)
        self.host.loop.run_ready()

    def written(self) -> bytes:
        return self.sock.take()
