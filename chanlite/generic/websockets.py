"""WebSocket class consumers: raw, JSON, and multiplexed JSON streams.

Same names and behaviour as ``channels.generic.websockets`` of Channels 1.x,
with two fixes (see docs/migrating.md): a demultiplexed consumer's
``self.send(content)`` goes out through its stream instead of the 1.x
approach of monkeypatching ``send`` on the consumer *class* (which leaked
into every other use of that class and raced between threads), and the
demultiplexer no longer rewrites the received message in place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from ..auth import channel_and_http_session_user_from_http, channel_session_user_from_http
from ..channel import Channel, Group
from ..exceptions import SendNotAvailableOnDemultiplexer
from ..message import Message
from ..ordering import enforce_ordering
from ..sessions import channel_and_http_session
from .base import BaseConsumer

__all__ = [
    "WebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketMultiplexer",
    "WebsocketDemultiplexer",
]


def _frame(text: str | None, bytes: bytes | None, close: bool | int) -> dict[str, Any]:
    if text is not None and bytes is not None:
        raise ValueError("send either text or bytes, not both")
    message: dict[str, Any] = {}
    if text is not None:
        message["text"] = text
    elif bytes is not None:
        message["bytes"] = bytes
    if close:
        message["close"] = close
    if not message:
        raise ValueError("pass text=..., bytes=... or close=True")
    return message


class WebsocketConsumer(BaseConsumer):
    """A WebSocket connection's connect / receive / disconnect, as methods.

    Class attributes:
        http_user: log the user in from the Django session cookie of the
            handshake (``channel_session_user_from_http`` on connect) and
            make ``message.user`` / ``message.channel_session`` available on
            every message.
        http_user_and_session: as ``http_user``, and also keep
            ``message.http_session`` on every message.
        channel_session / channel_session_user: see BaseConsumer.
        strict_ordering: run ``websocket.receive`` strictly in ``order``.
        slight_ordering: only make sure connect ran before the rest.
        groups: groups the connection joins on connect and leaves on
            disconnect (or override ``connection_groups``).
    """

    method_mapping = {
        "websocket.connect": "raw_connect",
        "websocket.receive": "raw_receive",
        "websocket.disconnect": "raw_disconnect",
    }
    http_user = False
    http_user_and_session = False
    strict_ordering = False
    slight_ordering = False
    groups: list[str] | None = None

    def get_handler(self, message: Message, **kwargs: Any) -> Callable[..., Any]:
        if self.http_user or self.http_user_and_session:
            self.channel_session_user = True
        self.path = message.get("path")
        handler = super().get_handler(message, **kwargs)
        if message.channel.name == "websocket.connect":
            if self.http_user_and_session:
                handler = channel_and_http_session_user_from_http(handler)
            elif self.http_user:
                handler = channel_session_user_from_http(handler)
        elif self.http_user_and_session:
            handler = channel_and_http_session(handler)
        if "multiplexer" in kwargs:
            return handler  # the demultiplexer already ordered this message
        if self.strict_ordering or self.slight_ordering:
            return enforce_ordering(handler, slight=not self.strict_ordering)
        return handler

    def connection_groups(self, **kwargs: Any) -> list[str]:
        """Groups this connection belongs to (added on connect, discarded on disconnect)."""
        return list(self.groups or [])

    def raw_connect(self, message: Message, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).add(message.reply_channel)
        self.connect(message, **kwargs)

    def connect(self, message: Message, **kwargs: Any) -> None:
        """Accept the connection (override to check it, or raise DenyConnection)."""
        if "multiplexer" not in kwargs:  # a demultiplexer accepts once for all streams
            self.message.reply_channel.send({"accept": True})

    def raw_receive(self, message: Message, **kwargs: Any) -> None:
        if "text" in message:
            self.receive(text=message["text"], **kwargs)
        else:
            self.receive(bytes=message["bytes"], **kwargs)

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        """Called with each frame's ``text`` or ``bytes``; override it."""

    def send(
        self, text: str | None = None, bytes: bytes | None = None, close: bool | int = False
    ) -> None:
        """Send a frame (and/or close) to this connection."""
        if "multiplexer" in self.kwargs:
            raise SendNotAvailableOnDemultiplexer(
                f"{type(self).__name__} runs inside a demultiplexer: use "
                "kwargs['multiplexer'].send(payload) to reply on its stream"
            )
        self.message.reply_channel.send(_frame(text, bytes, close))

    @classmethod
    def group_send(
        cls,
        name: str,
        text: str | None = None,
        bytes: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        """Send a frame to every connection in group ``name``."""
        Group(name).send(_frame(text, bytes, close))

    def close(self, status: bool | int = True) -> None:
        """Close the connection (``True`` is code 1000, or pass a close code)."""
        self.message.reply_channel.send({"close": status})

    def raw_disconnect(self, message: Message, **kwargs: Any) -> None:
        for group in self.connection_groups(**kwargs):
            Group(group, channel_layer=message.channel_layer).discard(message.reply_channel)
        self.disconnect(message, **kwargs)

    def disconnect(self, message: Message, **kwargs: Any) -> None:
        """Called when the connection closed; override it."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """A WebsocketConsumer whose text frames are JSON documents."""

    def raw_receive(self, message: Message, **kwargs: Any) -> None:
        if "text" not in message:
            raise ValueError(
                f"{type(self).__name__} got a binary frame; JSON consumers take text frames only"
            )
        self.receive(self.decode_json(message["text"]), **kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Called with each frame decoded from JSON; override it."""

    def send(self, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        """Send ``content`` encoded as JSON (on its stream when multiplexed)."""
        multiplexer = self.kwargs.get("multiplexer")
        if multiplexer is not None:
            multiplexer.send(content)
            if close:
                multiplexer.reply_channel.send({"close": close})
            return
        self.message.reply_channel.send(_frame(self.encode_json(content), None, close))

    @classmethod
    def group_send(cls, name: str, content: Any, close: bool | int = False) -> None:  # type: ignore[override]
        Group(name).send(_frame(cls.encode_json(content), None, close))

    @classmethod
    def decode_json(cls, text: str) -> Any:
        return json.loads(text)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)


class WebsocketMultiplexer:
    """Sends one stream's payloads as ``{"stream": ..., "payload": ...}`` frames."""

    stream_key = "stream"
    payload_key = "payload"

    def __init__(self, stream: str, reply_channel: Channel) -> None:
        self.stream = stream
        self.reply_channel = reply_channel

    def send(self, payload: Any) -> None:
        self.reply_channel.send(self.encode(self.stream, payload))

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content, cls=DjangoJSONEncoder)

    @classmethod
    def encode(cls, stream: str, payload: Any) -> dict[str, Any]:
        return {"text": cls.encode_json({cls.stream_key: stream, cls.payload_key: payload})}

    @classmethod
    def group_send(cls, name: str, stream: str, payload: Any, close: bool | int = False) -> None:
        message = cls.encode(stream, payload)
        if close:
            message["close"] = close
        Group(name).send(message)


class WebsocketDemultiplexer(JsonWebsocketConsumer):
    """Routes JSON frames ``{"stream": s, "payload": {...}}`` to ``consumers[s]``.

    Each stream consumer gets ``multiplexer=`` (a :class:`WebsocketMultiplexer`)
    in its kwargs; connect and disconnect are forwarded to every stream.
    """

    consumers: dict[str, type[BaseConsumer]] = {}
    multiplexer_class = WebsocketMultiplexer

    def _forward(
        self, message: Message, consumer: type[BaseConsumer], stream: str, **kwargs: Any
    ) -> None:
        kwargs["multiplexer"] = self.multiplexer_class(stream, message.reply_channel)
        consumer(message, **kwargs)

    def connect(self, message: Message, **kwargs: Any) -> None:
        message.reply_channel.send({"accept": True})
        for stream, consumer in self.consumers.items():
            self._forward(message, consumer, stream, **kwargs)

    def receive(self, content: Any, **kwargs: Any) -> None:
        if not (isinstance(content, dict) and "stream" in content and "payload" in content):
            raise ValueError(
                'invalid multiplexed frame: expected {"stream": ..., "payload": {...}}, '
                f"got {content!r:.80}"
            )
        stream = content["stream"]
        consumer = self.consumers.get(stream)
        if consumer is None:
            raise ValueError(f"invalid multiplexed frame: stream {stream!r} is not one of "
                             f"{sorted(self.consumers)}")
        payload = content["payload"]
        if not isinstance(payload, dict):
            raise ValueError(
                f"multiplexed frame payload for {stream!r} is not a dict: {payload!r:.60}"
            )
        # A shallow copy keeps the session/user attributes the decorators set.
        inner = copy.copy(self.message)
        inner.content = {**self.message.content, "text": self.encode_json(payload)}
        self._forward(inner, consumer, stream, **kwargs)

    def disconnect(self, message: Message, **kwargs: Any) -> None:
        for stream, consumer in self.consumers.items():
            self._forward(message, consumer, stream, **kwargs)

    def send(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise SendNotAvailableOnDemultiplexer(
            "a demultiplexer has no single stream: use the multiplexer passed to the stream "
            "consumer (kwargs['multiplexer'].send(payload))"
        )

    @classmethod
    def group_send(cls, name: str, stream: str, payload: Any, close: bool | int = False) -> None:  # type: ignore[override]
        """Send ``payload`` on ``stream`` to every connection in group ``name``."""
        cls.multiplexer_class.group_send(name, stream, payload, close=close)
