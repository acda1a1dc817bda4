"""``HttpConsumer``: answer ``http.request`` messages routed to a consumer.

Most HTTP stays with Django views (the server runs them over WSGI); route
``http.request`` only for what views do badly — long-poll and streaming::

    class Updates(HttpConsumer):
        def handle(self, message, **kwargs):
            self.wait_for("updates")            # long-poll: reply comes later

    # elsewhere, when something happens:
    Updates.group_respond("updates", b'{"new": 1}', content_type="application/json")

A full response is one ``http.response`` message; a streamed one is a first
message with ``more_content=True`` followed by chunks (``content`` and
``more_content`` only), the last with ``more_content=False``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..channel import Group
from ..exceptions import RequestAborted, RequestTimeout
from ..message import Message
from .base import BaseConsumer

__all__ = ["HttpConsumer", "response_message", "iter_request_body"]

Headers = list[tuple[str | bytes, str | bytes]] | list[list[Any]] | None


def _bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1" if what == "header" else "utf-8")
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")


def response_message(
    status: int = 200,
    content: bytes | str = b"",
    headers: Headers = None,
    content_type: str | None = None,
    more_content: bool = False,
) -> dict[str, Any]:
    """Build the first ``http.response`` message (status, headers, content)."""
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"status must be an int HTTP status code, not {status!r}")
    pairs = [[_bytes(k, "header").lower(), _bytes(v, "header")] for k, v in headers or []]
    if content_type is not None and not any(k == b"content-type" for k, _ in pairs):
        pairs.append([b"content-type", _bytes(content_type, "header")])
    return {
        "status": status,
        "headers": pairs,
        "content": _bytes(content, "content"),
        "more_content": more_content,
    }


class HttpConsumer(BaseConsumer):
    """Base for ``http.request`` consumers; override :meth:`handle`.

    ``http.disconnect`` (the client left early) discards the reply channel
    from :meth:`connection_groups` and calls :meth:`disconnect`.
    """

    method_mapping = {"http.request": "raw_request", "http.disconnect": "raw_disconnect"}
    groups: list[str] | None = None
    #: Seconds to wait for each chunk of a request body sent on ``body_channel``.
    body_timeout: float = 30.0
    _streaming = False

    def dispatch(self, message: Message, **kwargs: Any) -> Any:
        try:
            return super().dispatch(message, **kwargs)
        except BaseException:
            if self._streaming:  # end the half-sent response instead of hanging the client
                self.message.reply_channel.send(
                    {"content": b"", "more_content": False}, immediately=True
                )
            raise

    def raw_request(self, message: Message, **kwargs: Any) -> None:
        self.handle(message, **kwargs)

    def handle(self, message: Message, **kwargs: Any) -> None:
        """Answer the request: ``respond()``, ``start_response()``, or ``wait_for()``."""
        raise NotImplementedError(
            f"{type(self).__name__} must define handle(self, message, **kwargs)"
        )

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return list(self.groups or [])

    def raw_disconnect(self, message: Message, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Message, **kwargs: Any) -> None:
        """The client went away before the response finished; override it."""

    # replies

    def respond(
        self, content: bytes | str = b"", status: int = 200, headers: Headers = None,
        content_type: str | None = "text/plain; charset=utf-8",
    ) -> None:
        """Send a complete response (delivered when the consumer returns)."""
        self.message.reply_channel.send(response_message(status, content, headers, content_type))

    def start_response(
        self, status: int = 200, headers: Headers = None,
        content_type: str | None = "text/plain; charset=utf-8", content: bytes | str = b"",
    ) -> None:
        """Begin a streamed response; sent at once so the client sees progress."""
        msg = response_message(status, content, headers, content_type, more_content=True)
        self.message.reply_channel.send(msg, immediately=True)
        self._streaming = True

    def send_chunk(self, content: bytes | str, more_content: bool = True) -> None:
        """Send one chunk of a streamed response, at once; ``more_content=False`` ends it."""
        if not self._streaming:
            raise RuntimeError("call start_response() before send_chunk()")
        self.message.reply_channel.send(
            {"content": _bytes(content, "content"), "more_content": more_content}, immediately=True
        )
        if not more_content:
            self._streaming = False

    def finish(self, content: bytes | str = b"") -> None:
        """End a streamed response."""
        self.send_chunk(content, more_content=False)

    def wait_for(self, *groups: str) -> None:
        """Long-poll: park this request in ``groups``; a later ``group_respond`` answers it."""
        names = groups or self.connection_groups(**self.kwargs)
        if not names:
            raise ValueError(
                f"{type(self).__name__}.wait_for() got no group: pass group names or set "
                "groups / connection_groups(), or the request would wait for nothing"
            )
        for group in names:
            Group(group, channel_layer=self.message.channel_layer).add(self.message.reply_channel)

    @classmethod
    def group_respond(
        cls, name: str, content: bytes | str = b"", status: int = 200, headers: Headers = None,
        content_type: str | None = "text/plain; charset=utf-8",
    ) -> None:
        """Answer every request waiting in group ``name`` with a complete response."""
        Group(name).send(response_message(status, content, headers, content_type))

    @classmethod
    def group_send_chunk(cls, name: str, content: bytes | str, more_content: bool = True) -> None:
        """Send a chunk to every streamed response in group ``name``."""
        Group(name).send({"content": _bytes(content, "content"), "more_content": more_content})

    # request body

    def read_body(self) -> bytes:
        """The whole request body, reading ``body_channel`` chunks if there are any.

        Raises RequestAborted if the client went away, RequestTimeout if a
        chunk takes longer than ``body_timeout``.
        """
        return b"".join(iter_request_body(self.message, self.body_timeout))


def iter_request_body(
    message: Message, chunk_timeout: float, deadline: float | None = None
) -> Iterator[bytes]:
    """Yield an ``http.request``'s ``body``, then each ``body_channel`` chunk.

    Shared by :class:`HttpConsumer` and :mod:`chanlite.handler`. Raises
    RequestAborted when the server reports the client gone (``closed``),
    RequestTimeout when a chunk takes longer than ``chunk_timeout`` seconds
    or ``deadline`` (a ``time.monotonic()`` value) passes.
    """
    body = message.get("body", b"")
    if body:
        yield body
    channel = message.get("body_channel")
    if not channel:
        return
    layer = message.channel_layer
    while True:
        timeout = chunk_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise RequestTimeout(f"the request body on {channel!r} did not arrive in time")
        got, chunk = layer.receive([channel], block=True, timeout=timeout)
        if got is None:
            raise RequestTimeout(f"no request body chunk on {channel!r} for {timeout:.1f}s")
        if chunk.get("closed"):
            raise RequestAborted("the client closed the connection while sending the body")
        content = chunk.get("content", b"")
        if content:
            yield content
        if not chunk.get("more_content", False):
            return
