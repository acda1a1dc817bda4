"""The scratch project's routing (``CHANNEL_LAYERS["default"]["ROUTING"]``):
an echo consumer, so samples that start a server or ask the router have one."""

from chanlite.routing import route


def echo(message):
    message.reply_channel.send({"text": message["text"]})


channel_routing = [route("websocket.receive", echo, path=r"^/echo/$")]
