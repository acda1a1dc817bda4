"""Consumers and views for tests/server/test_server_daphne_compat.py: what Daphne 1.x
projects relied on (proxy headers, root path, str headers, handshake replies,
http.disconnect)."""

from __future__ import annotations

import json

from django.http import JsonResponse
from django.urls import path

from chanlite.routing import route


def environ(request):
    meta = request.META
    return JsonResponse({"remote_addr": meta["REMOTE_ADDR"], "scheme": meta["wsgi.url_scheme"],
                         "script_name": meta["SCRIPT_NAME"]})


urlpatterns = [path("environ/", environ)]


def _info(message) -> str:
    return json.dumps({
        "client": message["client"], "scheme": message.get("scheme"),
        "root_path": message.get("root_path"),
        "headers": sorted({bytes(k).decode() for k, _ in message["headers"]}),
    })


def http_info(message, **kwargs):
    message.reply_channel.send({"status": 200, "content": _info(message).encode()})


def http_str_headers(message, **kwargs):
    # As 1.x code wrote them: str names and values, the value outside ASCII.
    message.reply_channel.send({"status": 200, "headers": [["X-Greeting", "caf\u00e9"]],
                                "content": b"ok"})


def http_quick(message, **kwargs):
    message.reply_channel.send({"status": 200, "content": b"quick"})


def http_disconnect(message, **kwargs):
    message.channel_layer.send("test.http_disconnect", {"path": message["path"]})


def ws_info(message, **kwargs):
    message.reply_channel.send({"accept": True, "text": _info(message)})


def ws_close_with(message, code, **kwargs):
    message.reply_channel.send({"close": int(code)})


def ws_invalid(message, **kwargs):
    message.reply_channel.send({"acept": True})  # a typo: not a valid reply


def ws_connect_seen(message, **kwargs):
    message.channel_layer.send("test.ws_connect", {"path": message["path"]})


channel_routing = [
    route("http.request", http_info, path=r"^/compat/info/$"),
    route("http.request", http_str_headers, path=r"^/compat/str-headers/$"),
    route("http.request", http_quick, path=r"^/compat/quick/$"),
    route("http.disconnect", http_disconnect),
    route("websocket.connect", ws_info, path=r"^/compat/info/$"),
    route("websocket.connect", ws_close_with, path=r"^/compat/close/(?P<code>\d+)/$"),
    route("websocket.connect", ws_invalid, path=r"^/compat/invalid/$"),
]
