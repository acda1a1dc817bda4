"""The consumer and routing files of the first-hour project (the same echo
as docs/getting-started.md), plus the usual mistakes made in them."""

CONSUMERS = '''\
from chanlite import Group


def ws_connect(message):
    message.reply_channel.send({"accept": True})
    Group("everyone").add(message.reply_channel)


def ws_receive(message):
    Group("everyone").send({"text": message["text"]})


def ws_disconnect(message):
    Group("everyone").discard(message.reply_channel)
'''

ROUTING = '''\
from chanlite.routing import route

from . import consumers

channel_routing = [
    route("websocket.connect", consumers.ws_connect, path=r"^/ws/$"),
    route("websocket.receive", consumers.ws_receive, path=r"^/ws/$"),
    route("websocket.disconnect", consumers.ws_disconnect, path=r"^/ws/$"),
]
'''

#: A typo in a consumer name: the module fails to import with an AttributeError.
ROUTING_TYPO = ROUTING.replace("consumers.ws_connect", "consumers.who_connect")


def write_app(project, routing: str = ROUTING) -> None:
    project.write("chat/consumers.py", CONSUMERS)
    project.write("chat/routing.py", routing)
