"""Routing lists imported by dotted path from the routing and worker tests."""

from chanlite.routing import route


def chat_message(message, **kwargs):
    message.reply_channel.send({"text": f"chat:{message['path']}:{sorted(kwargs.items())}"})


def app_connect(message, **kwargs):
    message.reply_channel.send({"text": f"app:{message['path']}:{sorted(kwargs.items())}"})


chat_routing = [
    route("websocket.receive", chat_message, path=r"^/(?P<room>[a-z]+)/$"),
]

app_routing = [
    route("websocket.connect", app_connect, path=r"^/$"),
]

not_a_list = 42
