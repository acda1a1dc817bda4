"""The chat's channel routing (``CHANNEL_LAYERS["default"]["ROUTING"]``).

Workers listen on exactly the channels named here: ``websocket.*`` for the
room streams, ``http.request``/``http.disconnect`` for the long-poll path
only (every other HTTP path goes to Django views), and ``chat.moderate`` for
the moderation task; ``/rooms/stream/`` carries the live room list (data binding).
"""

from chanlite.routing import route, route_class

from .consumers import ChatDemultiplexer, LongPoll, RoomListDemultiplexer, moderate
from .models import ROOM_PATTERN
from .reminders import REMIND_CHANNEL, ReminderConsumer, remind

channel_routing = [
    route_class(ChatDemultiplexer, path=rf"^/chat/(?P<room>{ROOM_PATTERN})/stream/$"),
    route_class(LongPoll, path=rf"^/chat/(?P<room>{ROOM_PATTERN})/poll/$"),
    route("chat.moderate", moderate),
    # reminders: a delayed message (chat/reminders.py)
    route_class(ReminderConsumer, path=rf"^/chat/(?P<room>{ROOM_PATTERN})/reminders/$"),
    route(REMIND_CHANNEL, remind),
    route_class(RoomListDemultiplexer, path=r"^/rooms/stream/$"),
]
