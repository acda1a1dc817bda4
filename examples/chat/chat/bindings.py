"""Data binding: the live room list (chanlite.binding, as Channels 1.x's).

Every save or delete of a :class:`~chat.models.Room` - a room visited for the
first time, a title set or changed in the admin - is sent to the group
``room-list`` on the ``rooms`` stream once the transaction commits; the
index page's ``liveRoomList()`` keeps its list current from those frames.
"""

from __future__ import annotations

from typing import Any

from chanlite.binding.websockets import WebsocketBinding

ROOM_LIST_GROUP = "room-list"


class RoomBinding(WebsocketBinding):
    model = "chat.Room"
    stream = "rooms"
    fields = ["title"]

    @classmethod
    def group_names(cls, instance: Any) -> list[str]:
        return [ROOM_LIST_GROUP]

    def has_permission(self, user: Any, action: str, pk: Any) -> bool:
        # Inbound changes (none are sent by the page) only from staff, as in the admin.
        return bool(user.is_staff)
