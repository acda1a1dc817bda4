"""Django views as consumers: ``channels.handler`` of Channels 1.x.

By default chanlite's server runs Django views itself, on its WSGI thread
pool, and sends only the paths your routing names to consumers. Routing
``http.request`` to :class:`ViewConsumer` instead runs views in *workers*
(embedded threads, or ``runworker`` processes on the IPC or Redis layer),
as every request did in Channels 1.x::

    channel_routing = [
        route("http.request", "chanlite.handler.ViewConsumer", path=r"^/reports/"),
        ...
    ]

:class:`AsgiRequest` is a Django ``HttpRequest`` built from an
``http.request`` message (the body read from ``body_channel`` when it
continues there, spooled to disk above ``FILE_UPLOAD_MAX_MEMORY_SIZE``);
:class:`AsgiHandler` runs Django's middleware and view for it and turns the
response into ``http.response`` messages (:meth:`AsgiHandler.encode_response`);
:class:`ViewConsumer` sends those on the request's reply channel.
docs/consumers.md ("Django views in workers") says when to choose which.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, ClassVar

from django import http
from django.conf import settings
from django.core import signals
from django.core.handlers import base
from django.core.signals import setting_changed
from django.http import FileResponse, HttpResponse, HttpResponseServerError
from django.urls import set_script_prefix
from django.utils.functional import cached_property

from .exceptions import RequestAborted, RequestTimeout, ResponseLater
from .generic.http import iter_request_body
from .message import Message

__all__ = ["AsgiRequest", "AsgiHandler", "ViewConsumer"]

logger = logging.getLogger("django.request")
log = logging.getLogger("chanlite.handler")


def _headers(message: Message) -> list[tuple[bytes, bytes]]:
    """``headers`` as byte pairs; the dict form of 1.0 is still accepted."""
    raw = message.get("headers") or []
    if isinstance(raw, dict):
        raw = raw.items()
    pairs = []
    for name, value in raw:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        pairs.append((name, value))
    return pairs


class AsgiRequest(http.HttpRequest):
    """An ``HttpRequest`` decoded from an ASGI ``http.request`` message.

    Views see what they would see under WSGI: ``META`` with ``REMOTE_ADDR``,
    ``SERVER_NAME``, ``HTTP_*`` headers (repeated ones joined with ``,``),
    ``CONTENT_TYPE``/``CONTENT_LENGTH``; ``request.body``/``POST``/``FILES``
    read from the whole body. ``request.message`` and ``request.reply_channel``
    are there for views that answer later (raise :class:`ResponseLater`).

    Raises RequestTimeout when the body does not arrive within
    ``body_receive_timeout`` seconds and RequestAborted when the client left
    while sending it (the handler answers 408, or nothing).
    """

    ResponseLater = ResponseLater

    #: Seconds the whole request body may take to arrive on ``body_channel``.
    body_receive_timeout: float = 60

    def __init__(self, message: Message) -> None:
        self.message = message
        self.reply_channel = message.reply_channel
        self._post_parse_error = False
        self._read_started = False
        self.resolver_match = None
        # Path: ``path`` may or may not carry ``root_path`` in front (Daphne
        # 1.x sent it with, chanlite's server without); Django wants both
        # parts, as SCRIPT_NAME + PATH_INFO.
        path = message["path"]
        if isinstance(path, bytes):  # the ASGI drafts of 1.0 sent bytes
            path = path.decode("utf-8")
        self.script_name = message.get("root_path") or ""
        if self.script_name and (
            path == self.script_name or path.startswith(self.script_name.rstrip("/") + "/")
        ):
            self.path_info = path[len(self.script_name.rstrip("/")):] or "/"
            self.path = path
        else:
            self.path_info = path or "/"
            self.path = self.script_name.rstrip("/") + self.path_info
        self.method = message["method"].upper()
        query_string = message.get("query_string", b"")
        if isinstance(query_string, str):
            query_string = query_string.encode("latin-1")
        self._query_bytes = query_string
        self.META: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            # Latin-1, as a WSGI server puts it in the environ, so a view reads
            # the same QUERY_STRING whichever way the request reached it.
            "QUERY_STRING": query_string.decode("latin-1"),
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": self.path_info,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        client = message.get("client")
        if client:
            self.META["REMOTE_ADDR"] = client[0]
            self.META["REMOTE_HOST"] = client[0]
            self.META["REMOTE_PORT"] = client[1]
        server = message.get("server")
        if server:
            self.META["SERVER_NAME"] = server[0]
            self.META["SERVER_PORT"] = str(server[1])
        else:
            self.META["SERVER_NAME"] = "unknown"
            self.META["SERVER_PORT"] = "0"
        for name_bytes, value_bytes in _headers(message):
            name = name_bytes.decode("latin-1").lower()
            if name == "content-length":
                key = "CONTENT_LENGTH"
            elif name == "content-type":
                key = "CONTENT_TYPE"
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
            value = value_bytes.decode("latin-1")
            if key in self.META:
                value = self.META[key] + "," + value
            self.META[key] = value
        self._set_content_type_params(self.META)
        self._stream = self._read_body(message)

    def _read_body(self, message: Message) -> Any:
        """The whole body as a file, spooled to disk above
        ``FILE_UPLOAD_MAX_MEMORY_SIZE`` so a large upload does not sit in
        the worker's memory."""
        deadline = time.monotonic() + self.body_receive_timeout
        spool = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
        try:
            for chunk in iter_request_body(message, self.body_receive_timeout, deadline):
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        size = spool.tell()
        spool.seek(0)
        if size and not self.META.get("CONTENT_LENGTH"):
            # Django's upload limits read CONTENT_LENGTH; a chunked request has none.
            self.META["CONTENT_LENGTH"] = str(size)
        return spool

    @cached_property
    def GET(self) -> http.QueryDict:  # type: ignore[override]
        return http.QueryDict(self._query_bytes, encoding=self._encoding)

    def _get_scheme(self) -> str:
        return self.message.get("scheme") or "http"

    def _get_post(self) -> http.QueryDict:
        if not hasattr(self, "_post"):
            self._load_post_and_files()
        return self._post

    def _set_post(self, post: http.QueryDict) -> None:
        self._post = post

    @property
    def FILES(self) -> Any:  # type: ignore[override]
        if not hasattr(self, "_files"):
            self._load_post_and_files()
        return self._files

    POST = property(_get_post, _set_post)  # type: ignore[assignment]

    @cached_property
    def COOKIES(self) -> dict[str, str]:  # type: ignore[override]
        return http.parse_cookie(self.META.get("HTTP_COOKIE", ""))


class _Later(HttpResponse):
    """Stands in for the response of a view that raised ResponseLater, so
    the middleware chain completes; the handler then sends nothing."""


class AsgiHandler(base.BaseHandler):
    """Runs one ``http.request`` message through Django's middleware and views.

    Calling the handler with a message yields the ``http.response`` messages
    to send, in order. Django's own error handling applies (404 and 500
    pages, ``handler500``, logging to ``django.request``); a failure even of
    that becomes a plain 500, as no WSGI server sits above to catch it.
    """

    request_class = AsgiRequest

    #: Bytes of body per ``http.response`` message (ViewConsumer lowers it to
    #: half the layer's ``max_message_size`` when that is smaller).
    chunk_size = 512 * 1024

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware()

    def __call__(self, message: Message, chunk_size: int | None = None) -> Iterator[dict]:
        set_script_prefix(message.get("root_path") or "")
        signals.request_started.send(sender=self.__class__, message=message)
        try:
            request = self.request_class(message)
        except UnicodeDecodeError:
            logger.warning("Bad Request (UnicodeDecodeError)", exc_info=sys.exc_info(),
                           extra={"status_code": 400})
            response: HttpResponse = http.HttpResponseBadRequest()
        except RequestTimeout:
            response = HttpResponse("408 Request Timeout (upload too slow)", status=408)
        except RequestAborted:
            signals.request_finished.send(sender=self.__class__)
            return  # the client is gone: nobody to answer
        else:
            response = self.get_response(request)
            if isinstance(response, _Later):
                response.close()
                return
            if isinstance(response, FileResponse):
                response.block_size = chunk_size or self.chunk_size
        try:
            yield from self.encode_response(response, chunk_size)
        finally:
            response.close()  # sends request_finished, closes files

    def process_exception_by_middleware(self, exception: Exception, request: Any) -> Any:
        if isinstance(exception, ResponseLater):
            return _Later()
        return super().process_exception_by_middleware(exception, request)

    @classmethod
    def encode_response(cls, response: Any, chunk_size: int | None = None) -> Iterator[dict]:
        """Yield ``http.response`` messages for a Django response.

        The first carries ``status`` and ``headers`` (``[name, value]`` byte
        lists - the layers' codec takes lists, not the tuples 1.x yielded;
        names keep their case, as some clients need; cookies become
        ``Set-Cookie``); the body follows
        in pieces of at most ``chunk_size`` bytes, the last with
        ``more_content`` False. A streaming response is sent piece by piece
        as its iterator produces them, ended by an empty last message.
        """
        size = chunk_size or cls.chunk_size
        headers = []
        for name, value in response.items():
            headers.append([
                name.encode("ascii") if isinstance(name, str) else bytes(name),
                value.encode("latin-1") if isinstance(value, str) else bytes(value),
            ])
        for cookie in response.cookies.values():
            headers.append([b"Set-Cookie", cookie.output(header="").strip().encode("latin-1")])
        message: dict[str, Any] = {"status": response.status_code, "headers": headers}
        if response.streaming:
            for part in response:
                for chunk, _last in cls.chunk_bytes(part, size):
                    if not chunk:
                        continue
                    message["content"] = chunk
                    message["more_content"] = True
                    yield message
                    message = {}
            message["more_content"] = False
            yield message
        else:
            for chunk, last in cls.chunk_bytes(response.content, size):
                message["content"] = chunk
                message["more_content"] = not last
                yield message
                message = {}

    @classmethod
    def chunk_bytes(
        cls, data: bytes, chunk_size: int | None = None
    ) -> Iterator[tuple[bytes, bool]]:
        """Yield ``(chunk, is_last)`` pieces of ``data`` (one empty piece for no data)."""
        size = chunk_size or cls.chunk_size
        if not data:
            yield data, True
            return
        for position in range(0, len(data), size):
            yield data[position:position + size], position + size >= len(data)


def _fallback_500(exc_info: Any) -> HttpResponse:
    return HttpResponseServerError(
        "".join(traceback.format_exception(*exc_info))
        if settings.DEBUG
        else "Internal Server Error",
        content_type="text/plain",
    )


class ViewConsumer:
    """The consumer that runs Django views: route ``http.request`` to it.

    Works both ways 1.x projects wrote it: routed as a class or dotted path
    (``route("http.request", "chanlite.handler.ViewConsumer")`` - each call
    ``ViewConsumer(message)`` handles that message) or as an instance
    (``route("http.request", ViewConsumer())``). The Django handler (with its
    loaded middleware) is built once per class and shared, as a WSGI server
    shares its one handler between threads.

    Replies are sent at once, chunk by chunk, so a streamed response reaches
    the client while the view still produces it. A reply channel that stays
    full for ``send_timeout`` seconds (a client that stopped reading) ends the
    response with a log line instead of holding the worker forever.
    """

    handler_class: ClassVar[type[AsgiHandler]] = AsgiHandler
    send_timeout: ClassVar[float] = 30.0
    _handlers: ClassVar[dict[type, AsgiHandler]] = {}
    _lock = threading.Lock()

    def __init__(self, message: Message | None = None, **kwargs: Any) -> None:
        self.handler = self.get_handler_instance()
        if message is not None:
            self(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        """So ``route_class(ViewConsumer, path=...)`` works too."""
        return {"http.request"}

    @classmethod
    def get_handler_instance(cls) -> AsgiHandler:
        handler = cls._handlers.get(cls)
        if handler is None:
            with cls._lock:
                handler = cls._handlers.get(cls)
                if handler is None:
                    handler = cls._handlers[cls] = cls.handler_class()
        return handler

    def reply_chunk_size(self, message: Message) -> int:
        """Body bytes per reply: the handler's, or half the layer's message limit."""
        limit = getattr(message.channel_layer, "max_message_size", None)
        size = self.handler.chunk_size
        return min(size, max(1024, limit // 2)) if limit else size

    def __call__(self, message: Message, **kwargs: Any) -> None:
        if message.reply_channel is None:
            raise ValueError(
                f"ViewConsumer got a message on {message.channel.name!r} without a "
                "reply_channel; route only http.request to it"
            )
        replies = self.handler(message, self.reply_chunk_size(message))
        started = False
        try:
            for reply in replies:
                if not self._send(message, reply):
                    return
                started = True
        except BaseException:
            if started:  # end the half-sent response instead of leaving the client waiting
                self._send(message, {"content": b"", "more_content": False})
            else:
                self._send(
                    message, next(AsgiHandler.encode_response(_fallback_500(sys.exc_info())))
                )
            raise
        finally:
            replies.close()

    def _send(self, message: Message, reply: dict) -> bool:
        layer = message.channel_layer
        deadline = time.monotonic() + self.send_timeout
        while True:
            try:
                message.reply_channel.send(reply, immediately=True)
                return True
            except layer.ChannelFull:
                if time.monotonic() >= deadline:
                    log.error("reply channel %s still full after %.0fs: abandoning the response "
                              "to %s", message.reply_channel.name, self.send_timeout,
                              message.get("path"))
                    return False
                time.sleep(0.05)


def _forget_handlers(setting: str, **kwargs: Any) -> None:
    """A test that overrides MIDDLEWARE gets a handler with the new chain."""
    if setting == "MIDDLEWARE":
        ViewConsumer._handlers.clear()


setting_changed.connect(_forget_handlers)
