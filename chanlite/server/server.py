"""The interface server, assembled: listener + I/O loop + WSGI pool + reply pump.

:class:`Server` wires the pieces and owns what they share: the channel layer,
this process's reply-channel prefix, the map from reply channel to session
(:class:`~chanlite.server.host.ReplyRegistry`) and the access log (the
routing questions and the origin check come from
:class:`~chanlite.server.policy._HandshakePolicy`). Sessions see it only as
a :class:`~chanlite.server.host.SessionHost` (``host.py``). It
can run in the current thread (:meth:`serve_forever`, for the commands) or
in a background thread (:meth:`start`, for tests and embedding), and shuts
down gracefully: stop accepting, close WebSockets with 1001, let in-flight
HTTP requests finish (up to ``shutdown_timeout``), then stop the threads.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import selectors
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from django.core.wsgi import get_wsgi_application

from ..layers.base import BaseChannelLayer
from ..routing import NoRouting, get_router
from ..worker_pool import WorkerPool
from .backpressure import LayerSender, Outbox, Owner
from .bodies import MemoryBudget, SpooledBody
from .config import ServerConfig
from .connection import Connection
from .host import ReplyRegistry
from .http import RequestHead, client_text
from .http_session import HTTPSession
from .loop import Loop
from .policy import _HandshakePolicy
from .pump import ReplyPump
from .ws_session import envelope_size
from .wsgi import WSGIPool

__all__ = ["Server", "reply_prefix", "client_text"]

log = logging.getLogger("chanlite.server")
_ALPHABET = string.ascii_letters + string.digits


def reply_prefix() -> str:
    """A fresh process-specific prefix, ``chanlite.response.<random>!``."""
    return "chanlite.response." + "".join(secrets.choice(_ALPHABET) for _ in range(12)) + "!"


class Server(_HandshakePolicy):
    """An HTTP/WebSocket server speaking ASGI 1.0 messages over a channel layer.

    Parameters:
        channel_layer: the layer consumers listen on.
        config: limits and timeouts (default: ``ServerConfig.from_settings()``).
        wsgi_app: the WSGI app for paths without an ``http.request`` route
            (default: Django's ``get_wsgi_application()``).
        router: decides which paths go to ``http.request`` consumers and
            drives embedded workers; ``"auto"`` loads the layer's ROUTING if
            it has one, ``None`` sends every HTTP request to WSGI.
        workers: embedded worker threads (0: consumers run elsewhere, e.g.
            ``runworker`` processes on the IPC or Redis layer).
        access_logger: logger name for one line per request (None: the
            ``chanlite.server.access`` logger if ``config.access_log``, else off).
    """

    #: Seconds between checks that the layer is still shared (see _check_detached).
    detach_check_interval: float = 2.0
    #: Why the server stopped on its own (``None``: it did not); commands exit 1.
    failure: str | None = None

    def __init__(
        self,
        channel_layer: BaseChannelLayer,
        config: ServerConfig | None = None,
        wsgi_app: Callable[..., Any] | None = None,
        router: Any = "auto",
        workers: int = 0,
        access_logger: str | None = None,
    ) -> None:
        self.layer = channel_layer
        self.config = config if config is not None else ServerConfig.from_settings()
        self.loop = Loop()
        self.prefix = reply_prefix()
        self._check_message_size()
        # Sends to full channels wait here (the socket is not read meanwhile).
        self.sender = LayerSender(channel_layer, self.loop, self.config.backpressure_timeout)
        self.replies = ReplyRegistry(self.prefix)
        self.connections: set[Connection] = set()
        self.draining = False
        self.router = self._load_router(router)
        self.workers = workers
        self.worker_pool: Any = None
        if access_logger is None and self.config.access_log:
            access_logger = "chanlite.server.access"
        self._access = logging.getLogger(access_logger) if access_logger else None
        if wsgi_app is None:
            wsgi_app = get_wsgi_application()
        self.wsgi = WSGIPool(wsgi_app, self.config.threads, self.loop.call_soon_threadsafe,
                             self.config.root_path, self.config.max_queued_requests)
        self.body_memory = MemoryBudget(self.config.max_body_memory)
        self.max_connections = self.config.connection_limit()
        self._accept_paused: list[socket.socket] = []
        self._limit_logged_at: dict[str, float] = {}
        self.pump = ReplyPump(self.layer, self.prefix, self._deliver_threadsafe)
        self.listeners: list[socket.socket] = []
        self.address: Any = None
        self.ready = threading.Event()
        self.thread: threading.Thread | None = None
        self._allowed_origins: list[str] | None = None
        self._drain_deadline: Any = None

    # ------------------------------------------------------------ pieces

    def _load_router(self, router: Any) -> Any:
        if router != "auto":
            return router
        # Only a missing ROUTING means "views only"; a routing that fails to
        # import raises here, so the server fails at start instead of
        # answering every WebSocket with a 403 after the connect timeout.
        try:
            return get_router(self.layer.alias or "default")
        except NoRouting as exc:
            log.info("no routing for layer %r (%s): HTTP goes to WSGI only", self.layer.alias, exc)
            return None

    def _check_message_size(self) -> None:
        """An explicit ``websocket_max_message_size`` must fit the layer's
        ``max_message_size`` with a message's envelope: a message the server
        accepts must be deliverable (not closed with 1009 after it arrived)."""
        wanted = self.config.websocket_max_message_size
        if wanted is None:
            return
        envelope = envelope_size(self.prefix + "0" * 20, "/")
        room = self.layer.max_message_size - envelope
        if wanted > room:
            raise ValueError(
                f"websocket_max_message_size={wanted} does not fit the channel layer: its "
                f"max_message_size={self.layer.max_message_size} leaves {room} bytes after "
                f"the message envelope. Raise max_message_size in CHANNEL_LAYERS[...]['CONFIG'] "
                f"to at least {wanted + envelope} (plus the longest path you serve), lower "
                "websocket_max_message_size, or leave it unset to derive it from the layer"
            )
    def url(self) -> str:
        """Where clients connect, as a user types it (no tuple reprs in logs)."""
        if self.config.unix_socket:
            return f"unix:{self.config.unix_socket}"
        host, port = (self.address or (self.config.host, self.config.port))[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def banner_parts(self) -> list[str]:
        """What the one start-up line says: layer, consumers, threads."""
        layer = f"layer {self.layer.alias or 'default'!r} ({type(self.layer).__name__})"
        if self.workers and self.router is not None and self.router.channels:
            workers = f"{self.workers} embedded worker thread(s)"
        elif self.router is None:
            workers = "no embedded workers (no ROUTING: Django views only)"
        else:
            workers = "no embedded workers (consumers run in `manage.py runworker`)"
        return [layer, workers, f"{self.config.threads} HTTP thread(s)"]

    def banner(self, name: str) -> str:
        """``chanlite serve app:layer at http://...: layer ..., ...`` (one line)."""
        return f"chanlite serve {name} at {self.url()}: " + ", ".join(self.banner_parts())

    def new_reply_channel(self) -> str:
        """A fresh, unguessable reply channel of this process
        (:meth:`ReplyRegistry.new_channel <chanlite.server.host.ReplyRegistry.new_channel>`)."""
        return self.replies.new_channel()

    # ------------------------------------------- the seam (SessionHost)

    def outbox(self, owner: Owner) -> Outbox:
        """A session's ordered, back-pressured sends to the layer."""
        return self.sender.outbox(owner)

    def submit_wsgi(self, session: HTTPSession, head: RequestHead, body: SpooledBody) -> bool:
        """Queue a WSGI request; False when ``max_queued_requests`` already wait."""
        return self.wsgi.submit(session, head, body)

    def access(self, head: RequestHead, status: int, size: int, client: Any,
               started_at: float | None) -> None:
        if self._access is None:
            return
        if head.client is not None:
            client = head.client  # as proxy headers say, when trusted
        self._access.info(
            '"%s %s HTTP/%s" %s %s', head.method, head.target.decode("latin-1"),
            head.http_version, status, size,
            # server_time: the same "[25/Nov/2026 10:00:00]" stamp Django's runserver logs.
            extra={"status_code": status, "client": client,
                   "server_time": time.strftime("%d/%b/%Y %H:%M:%S")},
        )

    def access_websocket(self, event: str, head: RequestHead, client: Any,
                         detail: int | None = None) -> None:
        """One Django-style line per WebSocket event, e.g. ``"WSCONNECT /ws/chat/"
        127.0.0.1:51234`` or ``"WSDISCONNECT /ws/chat/" 127.0.0.1:51234 1001``
        (``event`` is WSCONNECT, WSREJECT with the status, or WSDISCONNECT with
        the close code)."""
        if self._access is None:
            return
        self._access.info(
            '"%s %s" %s%s', event, head.target.decode("latin-1"), client_text(client),
            "" if detail is None else f" {detail}",
            extra={"status_code": 403 if event == "WSREJECT" else 101, "client": client,
                   "server_time": time.strftime("%d/%b/%Y %H:%M:%S")},
        )

    # ----------------------------------------------------------- replies

    def _deliver_threadsafe(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        self.loop.call_soon_threadsafe(self._deliver, batch)

    def _deliver(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        replies = self.replies
        try:
            for channel, message in batch:
                session = replies.get(channel)
                if session is None:
                    log.debug("reply for %s, which is gone (client left or timed out)", channel)
                    continue
                try:
                    session.on_reply(message)
                except Exception:
                    log.exception("error handling reply on %s", channel)
                    session.conn.abort()
        finally:
            self.pump.done()  # the pump may hand over the next batch

    # ---------------------------------------------------------- sockets

    def bind(self, sock: socket.socket | None = None) -> Any:
        """Open the listening socket (or adopt ``sock``); return its address."""
        config = self.config
        if sock is None:
            if config.unix_socket:
                if not hasattr(socket, "AF_UNIX"):
                    raise ValueError(
                        "unix_socket needs Unix domain sockets, which this platform "
                        f"({sys.platform}) lacks: listen on a TCP host and port instead")
                try:
                    os.unlink(config.unix_socket)
                except FileNotFoundError:
                    pass
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(config.unix_socket)
            else:
                family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((config.host, config.port))
            sock.listen(config.backlog)
        sock.setblocking(False)
        self.listeners.append(sock)
        self.address = sock.getsockname()
        self.loop.add_reader(sock, partial(self._on_listener, sock))
        return self.address

    def _on_listener(self, listener: socket.socket, mask: int) -> None:
        self._accept(listener)

    def _accept(self, listener: socket.socket) -> None:
        tcp = listener.family != getattr(socket, "AF_UNIX", None)  # Windows has no AF_UNIX
        for _ in range(64):
            if len(self.connections) >= self.max_connections:
                # Stop accepting: the kernel's listen backlog holds the rest,
                # and connection_closed() resumes when one leaves.
                self.log_limited("%d connections open (max_connections): not accepting more "
                                "until one closes", len(self.connections))
                self.loop.remove(listener)
                self._accept_paused.append(listener)
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log_limited("cannot accept (%s) with %d connections open: pausing "
                                    "accepts for 0.5s; lower max_connections or raise the "
                                    "open-file limit (ulimit -n)", exc, len(self.connections))
                    self.loop.remove(listener)
                    self.loop.call_later(0.5, lambda: self._resume_accept(listener))
                return
            sock.setblocking(False)
            if tcp:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                local = sock.getsockname()
                conn = Connection(self, sock, [addr[0], addr[1]], [local[0], local[1]],
                                  HTTPSession)
            else:
                conn = Connection(self, sock, None, None, HTTPSession)
            self.connections.add(conn)

    def _resume_accept(self, listener: socket.socket) -> None:
        if not self.draining and listener in self.listeners:
            # modify() registers it, or updates it if already registered (both
            # a connection closing and the EMFILE timer may resume it).
            self.loop.modify(listener, selectors.EVENT_READ, partial(self._on_listener, listener))

    def log_limited(self, text: str, *args: Any) -> None:
        """Log a limit being hit at most once a minute: under a flood the
        limit is hit thousands of times a second, and the log must survive."""
        now = time.monotonic()
        if now - self._limit_logged_at.get(text, -1e9) >= 60.0:  # per kind of message
            self._limit_logged_at[text] = now
            log.warning(text + " (logged at most once a minute)", *args)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self._accept_paused and len(self.connections) < self.max_connections:
            paused, self._accept_paused = self._accept_paused, []
            for listener in paused:
                self._resume_accept(listener)
        if self.draining and not self.connections:
            self.loop.stop()

    # ------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Run in this thread until :meth:`shutdown`; then stop every thread."""
        if not self.listeners:
            self.bind()
        self.wsgi.start()
        self.pump.start()
        if self.workers:
            self._start_workers()
        log.debug("chanlite server listening on %s (reply prefix %s)", self.url(), self.prefix)
        self._check_reply_capacity()
        self.loop.call_later(self.detach_check_interval, self._check_detached)
        self.ready.set()
        try:
            self.loop.run()
        finally:
            self._teardown()

    def _check_detached(self) -> None:
        """Stop (``failure`` says why) when the layer is no longer shared, e.g.
        its IPC segment was removed: replies would never reach this process."""
        if self.draining:
            return
        reason = self.layer.detached()
        if reason is None:
            self.loop.call_later(self.detach_check_interval, self._check_detached)
            return
        self.failure = reason
        log.error("the channel layer is gone: %s; the server stops (restart it once the "
                  "layer is back)", reason)
        self._begin_drain(self.config.shutdown_timeout)

    def _check_reply_capacity(self) -> None:
        """Warn when this process's reply queue is small: every connection's
        replies share it, so a group broadcast to more connections than its
        capacity silently skips the rest (``send_group`` skips full members)."""
        capacity = self.layer.capacity_for(self.prefix)
        if capacity < 10_000:
            log.warning(
                "the server's reply queue %r holds only %d messages, shared by all its "
                "connections: a Group.send to more connections drops the rest. Raise "
                "CHANNEL_LAYERS[%r]['CONFIG']['process_capacity'] (default 10000) or "
                "match 'chanlite.response.*' in 'channel_capacity'", self.prefix, capacity,
                self.layer.alias or "default")

    def _start_workers(self) -> None:
        if self.router is None or not self.router.channels:
            # A plain Django project (no ROUTING yet) must still run: serve views only.
            log.warning(
                "no embedded workers: CHANNEL_LAYERS[%r] routes no channel, so no consumer "
                "would run (WebSocket handshakes will time out with 403)", self.layer.alias)
            return
        self.worker_pool = WorkerPool(self.layer, self.router, threads=self.workers)
        self.worker_pool.start()

    def start(self) -> Any:
        """Serve on a background thread; return the bound address once ready."""
        if not self.listeners:
            self.bind()
        self.thread = threading.Thread(target=self.serve_forever, name="chanlite-server",
                                       daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("chanlite server did not start within 10s")
        return self.address

    def shutdown(self, timeout: float | None = None) -> bool:
        """Graceful stop from any thread; True if everything ended in time."""
        if timeout is None:
            timeout = self.config.shutdown_timeout
        self.loop.call_soon_threadsafe(self._begin_drain, timeout)
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout + 15)
            return not self.thread.is_alive()
        return True

    def request_shutdown(self) -> None:
        """Begin a graceful stop; safe from a signal handler (no blocking)."""
        self.loop.call_soon_from_signal(self._begin_drain, self.config.shutdown_timeout)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: graceful stop; a second signal drops what is left.

        Only possible on the main thread (Python's rule); the commands call it
        when they run the loop there.
        """

        def handler(signum: int, frame: Any) -> None:
            if self.draining:
                log.warning("second signal %s: dropping remaining connections", signum)
                self.loop.call_soon_from_signal(self._drain_timeout)
            else:
                log.info("signal %s: graceful shutdown (up to %ss)", signum,
                         self.config.shutdown_timeout)
                self.request_shutdown()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _begin_drain(self, timeout: float) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("shutting down: closing %d listener(s), %d connection(s)",
                 len(self.listeners), len(self.connections))
        for listener in self.listeners:
            self.loop.remove(listener)
            listener.close()
        if self.config.unix_socket:
            try:
                os.unlink(self.config.unix_socket)
            except OSError:
                pass
        for conn in list(self.connections):
            conn.session.drain()
        if not self.connections:
            self.loop.stop()
        self._drain_deadline = self.loop.call_later(timeout, self._drain_timeout)

    def _drain_timeout(self) -> None:
        log.warning("shutdown: %d connection(s) still open after the timeout; dropping them",
                    len(self.connections))
        for conn in list(self.connections):
            conn.abort()
        self.loop.stop()

    def _teardown(self) -> None:
        deadline = time.monotonic() + 10
        for conn in list(self.connections):
            conn.abort()
        self.sender.close()  # a last try for messages still waiting for room
        for listener in self.listeners:
            try:
                listener.close()
            except OSError:  # pragma: no cover
                pass
        self.pump.stop()
        self.wsgi.stop(max(0.1, deadline - time.monotonic()))
        if self.worker_pool is not None:
            self.worker_pool.stop(max(0.1, deadline - time.monotonic()))
        self.loop.close()
        log.info("chanlite server stopped")
