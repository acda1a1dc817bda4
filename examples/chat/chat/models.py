"""What the chat stores: messages (history and long-poll catch-up) and presence.

Messages are stored, not only broadcast, because the long-poll fallback asks
"everything after id N": a client that was between two polls when a message
went out still gets it on its next poll.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

#: A room name is also part of group names, which allow only ASCII letters,
#: digits, '-', '_' and '.' and must stay under 100 characters.
ROOM_PATTERN = r"[-A-Za-z0-9_]{1,40}"

#: A connection whose heartbeat is older than this no longer counts as present
#: (covers a server that died without sending websocket.disconnect).
PRESENCE_TIMEOUT = timedelta(seconds=60)


class ChatMessage(models.Model):
    room = models.CharField(max_length=40, db_index=True)
    username = models.CharField(max_length=150)
    text = models.TextField()
    moderated = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def as_dict(self) -> dict:
        """The JSON shape both transports (WebSocket and long-poll) send."""
        return {
            "id": self.id,
            "room": self.room,
            "user": self.username,
            "text": self.text,
            "moderated": self.moderated,
            "time": self.created.isoformat(),
        }


class Presence(models.Model):
    """One open WebSocket connection in a room (keyed by its reply channel)."""

    room = models.CharField(max_length=40, db_index=True)
    reply_channel = models.CharField(max_length=100, unique=True)
    username = models.CharField(max_length=150)
    last_seen = models.DateTimeField(default=timezone.now)

    @classmethod
    def usernames(cls, room: str) -> list[str]:
        """Who is in ``room`` now: distinct users with a fresh connection."""
        fresh = timezone.now() - PRESENCE_TIMEOUT
        names = cls.objects.filter(room=room, last_seen__gte=fresh).values_list(
            "username", flat=True
        )
        return sorted(set(names))


class Room(models.Model):
    """A room's presence version: bumped in the same transaction as every
    presence change, so clients can drop a presence list that arrives after a
    newer one (two workers may flush their broadcasts in either order)."""

    name = models.CharField(max_length=40, primary_key=True)
    presence_version = models.BigIntegerField(default=0)
    #: What the live room list shows (set or changed in the admin); the name
    #: when empty. Changes reach open pages through chat.bindings.RoomBinding.
    title = models.CharField(max_length=80, blank=True)

    def __str__(self) -> str:
        return self.title or self.name
