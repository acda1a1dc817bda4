"""Consumers and routing used by the live server tests (tests/test_server_*.py).

They run in embedded worker threads (or a runworker process), so they only
use the public programming model: ``message.reply_channel`` and ``Group``.
"""

from __future__ import annotations

import json

from chanlite.channel import Group
from chanlite.routing import route

# ------------------------------------------------------------------ WebSocket


def ws_accept(message, **kwargs):
    message.reply_channel.send({"accept": True})


def ws_echo(message, **kwargs):
    if "text" in message.content:
        text = message["text"]
        if text.startswith("close:"):
            message.reply_channel.send({"close": int(text[6:])})
        elif text == "order":
            message.reply_channel.send({"text": str(message["order"])})
        else:
            message.reply_channel.send({"text": text})
    else:
        message.reply_channel.send({"bytes": message["bytes"]})


def ws_json(message, **kwargs):
    data = json.loads(message["text"])
    message.reply_channel.send({"text": json.dumps({"sum": sum(data["numbers"])})})


def ws_reject(message, **kwargs):
    message.reply_channel.send({"close": True})


def ws_refuse(message, **kwargs):
    message.reply_channel.send({"accept": False})


def ws_silent(message, **kwargs):
    pass  # never answers: the server's connect timeout rejects


def ws_accept_with_text(message, **kwargs):
    message.reply_channel.send({"text": "hello"})


def chat_connect(message, room):
    Group(f"chat-{room}", channel_layer=message.channel_layer).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


def chat_receive(message, room):
    Group(f"chat-{room}", channel_layer=message.channel_layer).send({"text": message["text"]})


def chat_disconnect(message, room):
    Group(f"chat-{room}", channel_layer=message.channel_layer).discard(message.reply_channel)
    message.channel_layer.send("test.disconnects", {"code": message["code"],
                                                    "order": message["order"]})


# ----------------------------------------------------------------------- HTTP


def http_hello(message, **kwargs):
    message.reply_channel.send({
        "status": 200,
        "headers": [[b"content-type", b"text/plain"]],
        "content": b"hello from a consumer " + message["path"].encode(),
    })


def http_stream(message, **kwargs):
    reply = message.reply_channel
    reply.send({"status": 200, "headers": [], "content": b"one,", "more_content": True})
    reply.send({"content": b"two,", "more_content": True})
    reply.send({"content": b"three"})


def http_poll(message, **kwargs):
    Group("poll", channel_layer=message.channel_layer).add(message.reply_channel)
    message.channel_layer.send("test.parked", {"reply_channel": message.reply_channel.name})


def http_body(message, **kwargs):
    body = message["body"]
    if "body_channel" in message.content:
        layer = message.channel_layer
        while True:
            _, chunk = layer.receive([message["body_channel"]], block=True, timeout=5)
            assert chunk is not None, "body chunk did not arrive"
            body += chunk["content"]
            if not chunk.get("more_content"):
                break
    message.reply_channel.send({
        "status": 200,
        "headers": [[b"x-body-channel", str("body_channel" in message.content).encode()]],
        "content": b"%d:%s" % (len(body), body[:10]),
    })


def http_disconnect(message, **kwargs):
    message.channel_layer.send("test.http_disconnect", {"path": message["path"]})


def noop(message, **kwargs):
    pass


def ws_delayed(message, **kwargs):
    """``/delayed/``: "pending" answers how many asgi.delay requests wait in the
    layer; any other text comes back 50 ms later through the delay service."""
    from chanlite.delay import DelayedMessage

    text = message["text"]
    if text == "pending":
        stats = message.channel_layer.channel_statistics("asgi.delay")
        message.reply_channel.send({"text": f"pending {stats['messages_pending']}"})
        return
    DelayedMessage(message.reply_channel.name, {"text": f"later: {text}"}, delay=50).send()
    message.reply_channel.send({"text": "scheduled"})  # leaves after the delay request


channel_routing = [
    route("websocket.connect", ws_accept, path=r"^/delayed/$"),
    route("websocket.receive", ws_delayed, path=r"^/delayed/$"),
    route("websocket.connect", ws_accept, path=r"^/echo/$"),
    route("websocket.receive", ws_echo, path=r"^/echo/$"),
    route("websocket.connect", ws_accept, path=r"^/json/$"),
    route("websocket.receive", ws_json, path=r"^/json/$"),
    route("websocket.connect", ws_reject, path=r"^/reject/$"),
    route("websocket.connect", ws_refuse, path=r"^/refuse/$"),
    route("websocket.connect", ws_silent, path=r"^/silent/$"),
    route("websocket.connect", ws_accept_with_text, path=r"^/greet/$"),
    route("websocket.receive", ws_echo, path=r"^/greet/$"),
    route("websocket.connect", chat_connect, path=r"^/chat/(?P<room>\w+)/$"),
    route("websocket.receive", chat_receive, path=r"^/chat/(?P<room>\w+)/$"),
    route("websocket.disconnect", chat_disconnect, path=r"^/chat/(?P<room>\w+)/$"),
    route("http.request", http_hello, path=r"^/chan/hello/"),
    route("http.request", http_stream, path=r"^/chan/stream/$"),
    route("http.request", http_poll, path=r"^/chan/poll/$"),
    route("http.request", http_body, path=r"^/chan/body/$"),
    route("http.disconnect", http_disconnect),
    route("websocket.disconnect", noop),
]
