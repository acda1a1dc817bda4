"""The WSGI bridge: Django views (or any WSGI app) on a pool of threads.

Views are blocking code, so they run on ``threads`` pool threads while the
I/O loop keeps serving everyone else. A finished response goes back to the
loop as one hand-over: status, headers and the whole body together, so the
loop writes it in a single ``send``. Only a body that grows beyond
``_STREAM_AFTER`` bytes (a ``StreamingHttpResponse``, a big file) is
streamed chunk by chunk, and then the pool thread waits until the socket has
drained before producing more, so a slow client costs a thread's time but
never unbounded memory.
"""

from __future__ import annotations

import io
import logging
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVarTuple

from .bodies import SpooledBody
from .http import RequestHead, wsgi_path

if TYPE_CHECKING:  # pragma: no cover
    from wsgiref.types import WSGIApplication

    from _typeshed import OptExcInfo

    from .http_session import HTTPSession

    #: A request for a pool thread; ``None`` tells the thread to end.
    _Job = tuple[HTTPSession, RequestHead, bytes | SpooledBody] | None
    #: What the application passed to ``start_response``: WSGI's status line
    #: and ``(name, value)`` header strings.
    _Started = tuple[str, list[tuple[str, str]]]

__all__ = ["WSGIPool", "build_environ"]

log = logging.getLogger("chanlite.server")
_STREAM_AFTER = 256 * 1024
_DRAIN_WAIT = 60.0

_Args = TypeVarTuple("_Args")


class _HandOver(Protocol):
    """``Loop.call_soon_threadsafe``: how a pool thread gives the loop work."""

    def __call__(self, callback: Callable[[*_Args], object], /, *args: *_Args) -> None: ...


def build_environ(head: RequestHead, body: bytes | SpooledBody, client: list[Any] | None,
                  server: list[Any] | None, root_path: str = "",
                  scheme: str = "http") -> dict[str, Any]:
    """A PEP 3333 environ for a parsed request (headers with ``_`` are dropped,
    as Django's runserver does, so ``X_Forwarded`` cannot spoof ``X-Forwarded``).

    ``body`` is bytes or a :class:`SpooledBody` (then ``wsgi.input`` reads its
    memory or its temporary file)."""
    if isinstance(body, SpooledBody):
        size, stream = body.size, body.reader()
    else:
        size, stream = len(body), io.BytesIO(body)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": root_path,
        "PATH_INFO": wsgi_path(head),
        "QUERY_STRING": head.query_string.decode("latin-1"),
        "SERVER_NAME": str(server[0]) if server else "localhost",
        "SERVER_PORT": str(server[1]) if server and server[1] is not None else "80",
        "SERVER_PROTOCOL": "HTTP/" + head.http_version,
        "REMOTE_ADDR": str(client[0]) if client else "",
        "REMOTE_PORT": str(client[1]) if client else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": stream,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in head.headers:
        if b"_" in name:
            continue
        text = value.decode("latin-1")
        if name == b"content-type":
            environ["CONTENT_TYPE"] = text
        elif name == b"content-length":
            environ["CONTENT_LENGTH"] = text
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            if key in environ:
                sep = "; " if key == "HTTP_COOKIE" else ","
                environ[key] += sep + text
            else:
                environ[key] = text
    if head.content_length is None and size:
        environ["CONTENT_LENGTH"] = str(size)
    return environ


class WSGIPool:
    """A fixed pool of threads running one WSGI application."""

    def __init__(self, app: WSGIApplication, threads: int, call_soon_threadsafe: _HandOver,
                 root_path: str = "", max_queued: int = 1000) -> None:
        self.app = app
        self.call = call_soon_threadsafe
        self.root_path = root_path  # the default; each request carries its own
        self.max_queued = max_queued
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"chanlite-wsgi-{i}", daemon=True)
            for i in range(threads)
        ]
        self.busy = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, session: HTTPSession, head: RequestHead, body: bytes | SpooledBody) -> bool:
        """Queue a request for the next free thread; False when ``max_queued``
        requests already wait (views are not keeping up: the caller answers
        503 instead of letting the queue, and its bodies, grow without end)."""
        if self._jobs.qsize() >= self.max_queued:
            return False
        self._jobs.put((session, head, body))
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Let queued requests finish, then end the threads; True if all ended."""
        for _ in self._threads:
            self._jobs.put(None)
        ok = True
        for thread in self._threads:
            thread.join(timeout)
            ok = ok and not thread.is_alive()
        return ok

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self.busy += 1
            try:
                self._handle(*job)
            except BaseException:  # never let one request kill a pool thread
                # (BaseException: a view's sys.exit() passes Django's handler,
                # and would end this thread silently.)
                log.exception("WSGI request failed")
                self.call(job[0].wsgi_failed)  # nor leave its client waiting
            finally:
                with self._lock:
                    self.busy -= 1
                close = getattr(job[2], "close", None)
                if close is not None:
                    close()  # a spooled body: give back its memory, delete its file

    def _handle(self, session: HTTPSession, head: RequestHead, body: bytes | SpooledBody) -> None:
        if session.gone:
            return
        conn = session.conn
        environ = build_environ(head, body, head.client, conn.server_addr, head.root_path,
                                head.scheme)
        started: list[_Started] = []  # empty until the application calls start_response
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: OptExcInfo | None = None) -> Callable[[bytes], object]:
            # Headers go out only after the body is produced (or 256 KiB of it),
            # so a later start_response with exc_info may always replace them.
            started[:] = [(status, headers)]
            return chunks.append  # the legacy write() callable

        try:
            result: Iterable[bytes] = self.app(environ, start_response)
        except Exception:
            log.exception("WSGI application raised for %s %s", head.method, head.path)
            self.call(session.wsgi_start, 500, [(b"content-type", b"text/plain")],
                      b"Internal Server Error\n", False)
            return
        try:
            self._respond(session, result, started, chunks)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("WSGI response close() raised")

    def _respond(self, session: HTTPSession, result: Iterable[bytes], started: list[_Started],
                 chunks: list[bytes]) -> None:
        size = sum(map(len, chunks))
        streaming = False
        try:
            for chunk in result:
                if session.gone:
                    return
                if not chunk:
                    continue
                chunks.append(chunk)
                size += len(chunk)
                if size >= _STREAM_AFTER:
                    if not streaming:
                        status, headers = self._head(started)
                        self.call(session.wsgi_start, status, headers, b"".join(chunks), True)
                        streaming = True
                    elif not self._send_and_wait(session, b"".join(chunks)):
                        return  # the client stopped reading: the loop drops it
                    chunks.clear()
                    size = 0
        except Exception:
            log.exception("WSGI response iteration failed for %s", session.head and
                          session.head.path)
            if not streaming:
                self.call(session.wsgi_start, 500, [(b"content-type", b"text/plain")],
                          b"Internal Server Error\n", False)
            else:
                self.call(session.conn.abort)
            return
        if not started:
            log.error("WSGI application returned without calling start_response")
            self.call(session.wsgi_start, 500, [], b"", False)
            return
        if streaming:
            self.call(session.wsgi_body, b"".join(chunks), False, None)
        else:
            status, headers = self._head(started)
            self.call(session.wsgi_start, status, headers, b"".join(chunks), False)

    def _send_and_wait(self, session: HTTPSession, data: bytes) -> bool:
        """Hand ``data`` to the loop and wait for the socket to drain; False
        (the loop drops the client) if it does not drain in time."""
        drained = threading.Event()
        self.call(session.wsgi_body, data, True, drained)
        if not drained.wait(_DRAIN_WAIT):
            self.call(session.wsgi_stalled)  # session state is the loop's to change
            return False
        return True

    @staticmethod
    def _head(started: list[_Started]) -> tuple[str, list[tuple[bytes, bytes]]]:
        status, headers = started[0]
        # Django's WSGIHandler emits Set-Cookie values with a leading space
        # (``cookie.output(header="")``); whitespace around a field value is
        # not part of it (RFC 9110 5.5), and h11 rejects it, so strip it.
        return status, [(k.encode("latin-1"), v.strip().encode("latin-1")) for k, v in headers]


