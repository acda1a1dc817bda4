"""The chat's consumers: WebSocket streams, the long-poll endpoint, moderation.

Data path of one chat line (either transport)::

    browser --WebSocket frame {"stream": "messages", "payload": {"text": ...}}
            or POST /chat/<room>/send/ (a Django view)
        -> Channel("chat.moderate")          background task on its own channel
        -> moderate(): mask banned words, store the ChatMessage
        -> Group("chat-<room>")              every WebSocket in the room
         + Group("chat-poll-<room>")         every parked long-poll request

Presence (who is in the room) rides on the same WebSocket as a second stream
of the demultiplexer, so one connection carries both.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chanlite import Channel, Group
from chanlite.auth import http_session_user
from chanlite.exceptions import DenyConnection
from chanlite.generic import HttpConsumer, JsonWebsocketConsumer, WebsocketDemultiplexer
from chanlite.message import Message

from .bindings import ROOM_LIST_GROUP, RoomBinding
from .models import ChatMessage, Presence, Room

logger = logging.getLogger("chat")

MODERATE_CHANNEL = "chat.moderate"
MAX_TEXT = 2000
HISTORY = 50


def room_group(room: str) -> str:
    """The Group of every WebSocket connection in ``room``."""
    return f"chat-{room}"


def poll_group(room: str) -> str:
    """The Group of every long-poll request parked for ``room``."""
    return f"chat-poll-{room}"


def submit(room: str, username: str, text: Any) -> bool:
    """Queue a chat line for moderation; False (nothing sent) if it is empty.

    Both transports end here, so the WebSocket consumer and the long-poll
    send view behave the same.
    """
    if not isinstance(text, str):
        return False
    text = text.strip()[:MAX_TEXT]
    if not text:
        return False
    Channel(MODERATE_CHANNEL).send({"room": room, "user": username, "text": text})
    return True


# --------------------------------------------------------------- moderation


def _mask(text: str) -> tuple[str, bool]:
    words = [w for w in getattr(settings, "CHAT_BANNED_WORDS", []) if w]
    if not words:
        return text, False
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    masked = pattern.sub(lambda m: "*" * len(m.group(0)), text)
    return masked, masked != text


def moderate(message: Message) -> None:
    """Background task on ``chat.moderate``: clean, store, then broadcast.

    It runs on whichever worker takes it (an embedded thread, or a
    ``runworker`` process), so a slow check never holds up the connection
    that sent the line. Storing before broadcasting is what lets the
    long-poll fallback catch up from the database.
    """
    room, user, text = message.get("room"), message.get("user"), message.get("text")
    if not all(isinstance(v, str) and v for v in (room, user, text)):
        logger.warning("dropping a malformed chat.moderate message: %r", message.content)
        return
    text, masked = _mask(text[:MAX_TEXT])
    line = ChatMessage.objects.create(room=room, username=user, text=text, moderated=masked)
    if masked:
        logger.info("moderated a message by %s in %s", user, room)
    ChatDemultiplexer.group_send(room_group(room), "messages",
                                 {"type": "message", "message": line.as_dict()})
    # Long-poll requests are only woken up: each re-polls with ?after=<id>
    # and reads what it missed from the database, so no message can fall
    # between two polls.
    LongPoll.group_respond(poll_group(room), json.dumps({"messages": [], "wake": True}),
                           content_type="application/json")


# --------------------------------------------------------------- WebSocket


class MessagesStream(JsonWebsocketConsumer):
    """The ``messages`` stream: history on connect, new lines to moderation."""

    def connect(self, message: Message, room: str, **kwargs: Any) -> None:
        recent = list(ChatMessage.objects.filter(room=room).order_by("-id")[:HISTORY])
        self.send({"type": "history", "messages": [m.as_dict() for m in reversed(recent)]})

    def receive(self, content: Any, room: str, **kwargs: Any) -> None:
        if isinstance(content, dict):
            submit(room, self.message.user.get_username(), content.get("text"))


def _change_presence(room: str, change: Any) -> tuple[int, list[str]]:
    """Apply ``change()`` and read the new (version, users) in one transaction."""
    with transaction.atomic():
        Room.objects.get_or_create(name=room)
        Room.objects.filter(name=room).update(presence_version=F("presence_version") + 1)
        change()
        version = Room.objects.values_list("presence_version", flat=True).get(name=room)
        return version, Presence.usernames(room)


class PresenceStream(JsonWebsocketConsumer):
    """The ``presence`` stream: who is connected to the room.

    A connection counts while its row is fresh; the page sends a heartbeat
    every 20 seconds, so rows left behind by a server that died (no
    ``websocket.disconnect``) age out instead of haunting the list.
    """

    def _broadcast(self, room: str, change: Any) -> None:
        version, users = _change_presence(room, change)
        ChatDemultiplexer.group_send(room_group(room), "presence",
                                     {"type": "presence", "users": users, "version": version})

    def connect(self, message: Message, room: str, **kwargs: Any) -> None:
        reply = message.reply_channel.name
        self._broadcast(room, lambda: Presence.objects.update_or_create(
            reply_channel=reply,
            defaults={"room": room, "username": message.user.get_username(),
                      "last_seen": timezone.now()},
        ))

    def receive(self, content: Any, room: str, **kwargs: Any) -> None:
        if not (isinstance(content, dict) and content.get("type") == "heartbeat"):
            return
        reply = self.message.reply_channel.name
        updated = Presence.objects.filter(reply_channel=reply).update(last_seen=timezone.now())
        if not updated:  # aged out meanwhile (e.g. a long network stall): come back
            self.connect(self.message, room=room, **kwargs)

    def disconnect(self, message: Message, room: str, **kwargs: Any) -> None:
        reply = message.reply_channel.name
        if Presence.objects.filter(reply_channel=reply).exists():
            self._broadcast(room, lambda: Presence.objects.filter(reply_channel=reply).delete())


class ChatDemultiplexer(WebsocketDemultiplexer):
    """``/chat/<room>/stream/``: one WebSocket, two JSON streams.

    ``http_user = True`` reads the Django session cookie of the handshake
    (``channel_session_user_from_http``) and keeps the user in the channel
    session, so every later frame knows who sent it.
    """

    http_user = True
    consumers = {"messages": MessagesStream, "presence": PresenceStream}

    def connect(self, message: Message, room: str, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            raise DenyConnection  # the server answers the handshake with 403
        # Join the room's group here, not via `groups`, so a denied
        # connection never becomes a member.
        Group(room_group(room), channel_layer=message.channel_layer).add(message.reply_channel)
        super().connect(message, room=room, **kwargs)

    def disconnect(self, message: Message, room: str, **kwargs: Any) -> None:
        Group(room_group(room), channel_layer=message.channel_layer).discard(message.reply_channel)
        super().disconnect(message, room=room, **kwargs)


# --------------------------------------------------------------- long-poll


class LongPoll(HttpConsumer):
    """``GET /chat/<room>/poll/?after=<id>``: the fallback when WebSocket fails.

    Answers at once with the messages after ``after`` if there are any;
    otherwise parks the request in the room's poll group (no thread is held
    while it waits) until :func:`moderate` wakes it, or the server answers
    504 after ``http_response_timeout`` and the page polls again.

    A woken request's reply channel stays in the group until the layer's
    ``group_expiry`` (there is no "discard every member" call); later wake-ups
    sent to it are dropped by the server, which has already answered it, so
    this costs a little layer traffic and nothing else.
    """

    def connection_groups(self, room: str = "", **kwargs: Any) -> list[str]:
        return [poll_group(room)]

    def _json(self, payload: dict, status: int = 200) -> None:
        self.respond(json.dumps(payload), status=status, content_type="application/json",
                     headers=[("cache-control", "no-store")])

    @http_session_user
    def handle(self, message: Message, room: str, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            self._json({"error": "log in first"}, status=403)
            return
        query = parse_qs(message.get("query_string", b"").decode("latin-1"))
        try:
            after = int(query.get("after", ["0"])[0])
        except ValueError:
            self._json({"error": "after must be an integer message id"}, status=400)
            return
        # Join the group *before* reading the database: a message stored after
        # the read is broadcast after the join, so it wakes this request.
        self.wait_for()
        if after <= 0:  # first poll: the recent history, like the WebSocket's
            recent = ChatMessage.objects.filter(room=room).order_by("-id")[:HISTORY]
            new = list(reversed(recent))
        else:  # catching up: the oldest unseen first; the page re-polls at once
            new = list(ChatMessage.objects.filter(room=room, id__gt=after).order_by("id")[:HISTORY])
        if new:
            Group(poll_group(room), channel_layer=message.channel_layer).discard(
                message.reply_channel)
            self._json({"messages": [m.as_dict() for m in new]})


# --------------------------------------------------------------- room list


class RoomListDemultiplexer(WebsocketDemultiplexer):
    """``/rooms/stream/``: the index page's live room list.

    On connect it joins ``room-list`` and sends the current rooms as one
    ``{"action": "list", "rooms": [...]}`` payload; afterwards
    :class:`chat.bindings.RoomBinding` sends a create / update / delete for
    each change. A room saved between the join and the snapshot arrives
    twice, which the page's upsert by name makes harmless.
    """

    http_user = True
    consumers = {"rooms": RoomBinding.consumer}

    def connect(self, message: Message, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            raise DenyConnection
        Group(ROOM_LIST_GROUP, channel_layer=message.channel_layer).add(message.reply_channel)
        super().connect(message, **kwargs)
        rooms = [{"name": r.name, "title": r.title} for r in Room.objects.order_by("name")]
        self.multiplexer_class("rooms", message.reply_channel).send(
            {"action": "list", "rooms": rooms}
        )

    def disconnect(self, message: Message, **kwargs: Any) -> None:
        Group(ROOM_LIST_GROUP, channel_layer=message.channel_layer).discard(message.reply_channel)
        super().disconnect(message, **kwargs)
