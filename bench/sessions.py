"""Server session CPU per operation, in process: no sockets, threads or clients.

``bench/server.py`` measures a whole server under load, which on a shared
2-core machine moves by 2x between runs. This measures only what the I/O
loop spends in the session code for one operation, as CPU time (so other
processes' load matters little):

* ``http_us``: one keep-alive HTTP request routed to WSGI - request bytes
  read by a real ``Connection`` and parsed by ``HTTPSession``/h11, the WSGI
  response (``wsgi_start``) framed and written;
* ``ws_us``: one WebSocket echo - a 100-byte masked frame read and parsed,
  ``websocket.receive`` sent to an in-memory layer and taken back, the
  reply applied and its frame written.

The socket is a stub and the server a duck-typed stand-in that serves both
the sessions before the ``SessionHost`` seam (#15: ``conn.server.*``) and
after it (``conn.host.*``), so the same file compares two checkouts::

    PYTHONPATH=/path/to/old/checkout python bench/sessions.py
    python bench/sessions.py --rounds 5 --ops 10000
"""

from __future__ import annotations

import argparse
import inspect
import selectors
import time
import types
from typing import Any

from wsproto.connection import Connection as WSClient
from wsproto.connection import ConnectionType
from wsproto.events import TextMessage

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.server.backpressure import LayerSender
from chanlite.server.bodies import MemoryBudget
from chanlite.server.config import ServerConfig
from chanlite.server.connection import Connection
from chanlite.server.http_session import HTTPSession
from chanlite.server.loop import Loop

READ = selectors.EVENT_READ
#: The Connection takes a session factory since the seam (#15).
SEAM = "session" in inspect.signature(Connection.__init__).parameters
UPGRADE = (b"GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class StubSocket:
    """Bytes in from ``inbox``; every write accepted whole."""

    def __init__(self) -> None:
        self.inbox = b""

    def recv(self, size: int) -> bytes:
        data, self.inbox = self.inbox, b""
        if not data:
            raise BlockingIOError
        return data

    def send(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


class SilentLoop(Loop):
    """A real Loop (timers, call_soon) that is never run: no socket interest."""

    def add_reader(self, sock: Any, callback: Any) -> None:
        pass

    def modify(self, sock: Any, events: int, callback: Any) -> None:
        pass

    def remove(self, sock: Any) -> None:
        pass


class StandIn:
    """What sessions use of the server, before and after the seam."""

    def __init__(self) -> None:
        self.layer = InMemoryChannelLayer()
        self.config = ServerConfig()
        self.loop = SilentLoop()
        self.sender = LayerSender(self.layer, self.loop, 10.0)
        self.body_memory = MemoryBudget(self.config.max_body_memory)
        self.draining = False
        self.prefix = "bench.response.x!"
        self.jobs: list[Any] = []
        self.wsgi = types.SimpleNamespace(submit=self.submit_wsgi)  # before the seam
        if SEAM:
            from chanlite.server.host import ReplyRegistry

            self.replies: Any = ReplyRegistry(self.prefix)
        else:
            self.replies = {}
        self._count = 0

    def outbox(self, owner: Any) -> Any:
        return self.sender.outbox(owner)

    def submit_wsgi(self, session: Any, head: Any, body: Any) -> bool:
        self.jobs.append(session)
        return True

    def new_reply_channel(self) -> str:  # before the seam
        self._count += 1
        return f"{self.prefix}{self._count}"

    def connection_closed(self, conn: Any) -> None:
        pass

    def access(self, *args: Any) -> None:
        pass

    def access_websocket(self, *args: Any) -> None:
        pass

    def log_limited(self, *args: Any) -> None:
        pass

    def origin_allowed(self, origin: Any, head: Any) -> bool:
        return True

    def websocket_refusal(self, content: Any) -> None:
        return None

    def connect_timeout_reason(self) -> str:
        return ""

    def has_http_route(self, head: Any) -> bool:
        return False

    def routes_http_disconnect(self, path: str) -> bool:
        return False


def connect(server: StandIn) -> tuple[Connection, StubSocket]:
    sock = StubSocket()
    if SEAM:
        conn = Connection(server, sock, ["10.0.0.1", 5], ["127.0.0.1", 80],  # type: ignore[arg-type]
                          HTTPSession)
    else:
        conn = Connection(server, sock, ["10.0.0.1", 5], ["127.0.0.1", 80])  # type: ignore[call-arg, arg-type]
        conn.session = HTTPSession(conn)
    return conn, sock


def http_us(ops: int) -> float:
    server = StandIn()
    conn, sock = connect(server)
    request = b"GET /view/ HTTP/1.1\r\nHost: x\r\n\r\n"
    headers = [(b"content-type", b"text/plain")]
    start = time.process_time()
    for _ in range(ops):
        sock.inbox = request
        conn.on_ready(READ)
        server.jobs.pop().wsgi_start(200, headers, b"hello", False)
    return (time.process_time() - start) / ops * 1e6


def ws_us(ops: int) -> float:
    server = StandIn()
    conn, sock = connect(server)
    sock.inbox = UPGRADE
    conn.on_ready(READ)
    _, connect_message = server.layer.receive(["websocket.connect"])
    assert connect_message is not None, "the handshake did not reach the layer"
    channel = connect_message["reply_channel"]
    conn.session.on_reply({"accept": True})
    frame = WSClient(ConnectionType.CLIENT).send(TextMessage(data="x" * 100))
    receive, replies = server.layer.receive, server.replies
    start = time.process_time()
    for _ in range(ops):
        sock.inbox = frame
        conn.on_ready(READ)
        _, message = receive(["websocket.receive"])
        assert message is not None, "the frame did not become a websocket.receive"
        replies.get(channel).on_reply({"text": message["text"]})
    return (time.process_time() - start) / ops * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=10_000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5, help="the best round is reported")
    args = parser.parse_args(argv)
    http_us(min(args.ops, 1000))  # warm up
    ws_us(min(args.ops, 1000))
    figures = {"http_us": min(http_us(args.ops) for _ in range(args.rounds)),
               "ws_us": min(ws_us(args.ops) for _ in range(args.rounds))}
    code = "after the seam" if SEAM else "before the seam"
    print(f"{code}: " + "  ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    return figures


if __name__ == "__main__":
    main()
