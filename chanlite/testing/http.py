"""``HttpClient``: drive ``http.request`` consumers and read their responses.

In Channels 1.x ``HttpClient`` was only a deprecated alias of ``WSClient``;
here it still is one (same cookies, session and login, so old tests keep
working) and adds what 1.x lacked: ``get``/``post``/``request`` build a
spec-shaped ``http.request``, run its consumer and put the ``http.response``
messages (chunks included) back together as a :class:`ChannelResponse`.
"""

from __future__ import annotations

import json as json_module
from dataclasses import dataclass, field
from typing import Any

from ..server.http import response_headers
from .websocket import WSClient

__all__ = ["HttpClient", "ChannelResponse"]


@dataclass
class ChannelResponse:
    """An ``http.response`` put back together from its messages."""

    status: int
    headers: list[list[bytes]] = field(default_factory=list)
    content: bytes = b""
    #: How many messages made it (more than 1: a streamed response).
    messages: int = 1

    def header(self, name: str | bytes, default: bytes | None = None) -> bytes | None:
        """The first value of header ``name`` (case-insensitive)."""
        key = name.lower().encode("latin-1") if isinstance(name, str) else name.lower()
        for pair_name, value in self.headers:
            if pair_name.lower() == key:
                return value
        return default

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def json(self) -> Any:
        return json_module.loads(self.content)


class HttpClient(WSClient):
    """A WSClient that can also make HTTP requests to ``http.request`` consumers."""

    def request(self, method: str = "GET", path: str = "/", body: bytes = b"",
                headers: dict[str, str] | None = None, json: Any = None,
                content_type: str | None = None, require: bool = True) -> ChannelResponse | None:
        """Send one ``http.request``, run its consumer, return the response.

        ``json=`` sends a JSON body. With ``require`` (default) a consumer
        that did not finish a response (e.g. parked a long-poll in a group)
        fails the test; with ``require=False`` it returns None and the
        response can be read later with :meth:`receive_response`.
        """
        if json is not None:
            body = json_module.dumps(json).encode("utf-8")
            content_type = content_type or "application/json"
        extra = [[b"content-length", str(len(body)).encode("ascii")]] if body else []
        if content_type:
            extra.append([b"content-type", content_type.encode("latin-1")])
        for name, value in (headers or {}).items():
            extra.append([name.lower().encode("latin-1"), value.encode("latin-1")])
        content = {
            "http_version": "1.1",
            "method": method.upper(),
            "root_path": "",
            "scheme": "http",
            "headers": self.headers + extra,
            "body": body,
        }
        self.send_and_consume("http.request", content, path=path)
        return self.receive_response(require=require)

    def get(self, path: str = "/", **options: Any) -> ChannelResponse | None:
        return self.request("GET", path, **options)

    def post(self, path: str = "/", body: bytes = b"", **options: Any) -> ChannelResponse | None:
        return self.request("POST", path, body, **options)

    def receive_response(self, require: bool = True) -> ChannelResponse | None:
        """Assemble the next complete ``http.response`` from the reply channel."""
        first = self.receive(json=False)
        if first is None or not isinstance(first, dict) or "status" not in first:
            if first is not None:
                self.unreceive(first if isinstance(first, dict) else {"text": first})
            if require:
                raise AssertionError(
                    f"no http.response arrived on {self.reply_channel} (got {first!r:.80}); "
                    "did the consumer reply with {'status': ..., 'content': ...}?"
                )
            return None

        # Headers as the server would write them (str encoded as latin-1).
        response = ChannelResponse(first["status"], [list(p) for p in response_headers(first)],
                                   first.get("content", b""))
        more = first.get("more_content", False)
        while more:
            chunk = self.receive(json=False)
            if chunk is None:
                raise AssertionError(
                    f"the response on {self.reply_channel} stopped after {response.messages} "
                    "message(s) with more_content=True; send the rest (more_content=False)"
                )
            response.content += chunk.get("content", b"")
            response.messages += 1
            more = chunk.get("more_content", False)
        return response
