"""Sample consumers: echo, JSON, demultiplexed, cookie-authenticated, group
chat, and a background task — one of each kind a user writes, so the
testing toolkit's tests exercise every helper against realistic code."""

from __future__ import annotations

from typing import Any

from chanlite.channel import Channel, Group
from chanlite.generic import (
    HttpConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
)
from chanlite.generic.http import response_message

# ------------------------------------------------------------------- echo


def echo_connect(message: Any, **kwargs: Any) -> None:
    message.reply_channel.send({"accept": True})


def echo_receive(message: Any, **kwargs: Any) -> None:
    if "text" in message:
        message.reply_channel.send({"text": message["text"]})
    else:
        message.reply_channel.send({"bytes": message["bytes"]})


# ------------------------------------------------------------------- JSON


class Calculator(JsonWebsocketConsumer):
    """Replies ``{"sum": ...}`` to ``{"numbers": [...]}``; bad input closes."""

    def receive(self, content: Any, **kwargs: Any) -> None:
        numbers = content.get("numbers") if isinstance(content, dict) else None
        if not isinstance(numbers, list):
            self.send({"error": "expected {'numbers': [...]}"}, close=4000)
            return
        self.send({"sum": sum(numbers), "order": self.message["order"]})


# ---------------------------------------------------------- demultiplexed


class EchoStream(JsonWebsocketConsumer):
    def receive(self, content: Any, **kwargs: Any) -> None:
        self.send({"echo": content})


class UpperStream(JsonWebsocketConsumer):
    def receive(self, content: Any, **kwargs: Any) -> None:
        self.send({"upper": str(content.get("text", "")).upper()})


class Streams(WebsocketDemultiplexer):
    consumers = {"echo": EchoStream, "upper": UpperStream}


# ------------------------------------------------------ cookie-authenticated


class Whoami(WebsocketConsumer):
    """Only logged-in users may connect (the Django session cookie of the
    handshake); every frame is answered with the user's name."""

    http_user = True

    def connect(self, message: Any, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            self.close()
            return
        message.reply_channel.send({"accept": True})
        message.channel_session["greeted"] = message.user.get_username()

    def receive(self, text: str | None = None, bytes: bytes | None = None, **kwargs: Any) -> None:
        self.send(text=f"{self.message.user.get_username()}: {text}")


# --------------------------------------------------------------- group chat


class Chat(JsonWebsocketConsumer):
    """Everyone in ``/chat/<room>/`` gets every message sent to the room."""

    def connection_groups(self, **kwargs: Any) -> list[str]:
        return [f"chat-{kwargs['room']}"]

    def receive(self, content: Any, **kwargs: Any) -> None:
        self.group_send(f"chat-{kwargs['room']}", {"room": kwargs["room"], "said": content})


# ---------------------------------------------------------- background task


def task_start(message: Any, **kwargs: Any) -> None:
    """A WebSocket frame ``{"square": n}`` queues work on ``sample.tasks``."""
    import json

    n = json.loads(message["text"])["square"]
    Channel("sample.tasks", channel_layer=message.channel_layer).send(
        {"n": n, "notify": message.reply_channel.name}
    )
    message.reply_channel.send({"text": json.dumps({"queued": n})})


def task_run(message: Any, **kwargs: Any) -> None:
    """The background task: compute, then notify the requester."""
    import json

    result = message["n"] ** 2
    Channel(message["notify"], channel_layer=message.channel_layer).send(
        {"text": json.dumps({"result": result})}
    )
    Group("sample-task-log", channel_layer=message.channel_layer).send(
        {"text": json.dumps({"done": message["n"]})}
    )


# ---------------------------------------------------------------------- HTTP


class Hello(HttpConsumer):
    def handle(self, message: Any, **kwargs: Any) -> None:
        name = message["query_string"].decode() or "world"
        self.respond(f"hello {name}")


def countdown(message: Any, **kwargs: Any) -> None:
    """A streamed response: three chunks."""
    reply = message.reply_channel
    reply.send(response_message(200, b"3,", more_content=True))
    reply.send({"content": b"2,", "more_content": True})
    reply.send({"content": b"1", "more_content": False})
