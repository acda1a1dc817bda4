"""Reminders: a delayed message (``asgi.delay``) in the chat.

"Remind me in 30 seconds: stretch" is one WebSocket frame on
``/chat/<room>/reminders/``; the consumer schedules a message on the
``chat.remind`` channel with :class:`~chanlite.delay.DelayedMessage` and
answers at once. When the delay is up, the delay service sends it and
:func:`remind` rings the page through the connection's reply channel::

    browser --{"text": "stretch", "seconds": 30}--> ReminderConsumer
        -> DelayedMessage("chat.remind", {...}, delay=30000)   asgi.delay
        ... 30 s later, the delay service ...
        -> Channel("chat.remind") -> remind() -> reply channel -> browser

The delay service runs inside ``runserver`` for the in-memory layer; with
``CHAT_LAYER=ipc`` or ``redis`` run ``manage.py rundelay`` beside the
workers (it keeps pending reminders in the database across its restarts).
A reminder for a page that has gone is dropped by the server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chanlite import Channel
from chanlite.delay import DelayedMessage
from chanlite.exceptions import DenyConnection
from chanlite.generic import JsonWebsocketConsumer
from chanlite.message import Message

logger = logging.getLogger("chat")

REMIND_CHANNEL = "chat.remind"
MAX_SECONDS = 3600
MAX_TEXT = 200


class ReminderConsumer(JsonWebsocketConsumer):
    """``/chat/<room>/reminders/``: schedule reminders for this page."""

    http_user = True

    def connect(self, message: Message, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            raise DenyConnection
        super().connect(message, **kwargs)

    def receive(self, content: Any, room: str, **kwargs: Any) -> None:
        text = content.get("text") if isinstance(content, dict) else None
        seconds = content.get("seconds") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text.strip() or type(seconds) is not int \
                or not 1 <= seconds <= MAX_SECONDS:
            self.send({"type": "error",
                       "error": f"send {{'text': ..., 'seconds': 1..{MAX_SECONDS}}}"})
            return
        text = text.strip()[:MAX_TEXT]
        DelayedMessage(REMIND_CHANNEL, {
            "reply_channel": self.message.reply_channel.name,
            "room": room,
            "text": text,
        }, delay=seconds * 1000).send()
        self.send({"type": "set", "text": text, "seconds": seconds})


def remind(message: Message) -> None:
    """``chat.remind``: the delay is up; ring the page that asked."""
    reply, text = message.get("reply_channel"), message.get("text")
    if not (isinstance(reply, str) and isinstance(text, str)):
        logger.warning("dropping a malformed chat.remind message: %r", message.content)
        return
    Channel(reply, channel_layer=message.channel_layer).send(
        {"text": json.dumps({"type": "reminder", "text": text})})
