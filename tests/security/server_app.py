"""The app the server security tests attack: a view that says who is logged
in, a WebSocket consumer that logs the cookie's user into its channel
session and tells the client its reply channel, and consumer HTTP routes."""

from __future__ import annotations

import threading

from django.http import HttpResponse
from django.urls import path

from chanlite.auth import channel_session_user, channel_session_user_from_http
from chanlite.routing import route


def whoami(request):
    user = request.user
    return HttpResponse(user.get_username() if user.is_authenticated else "anonymous")


def upload(request):
    """Reads the whole body from wsgi.input: its size and its kind."""
    data = request.body
    kind = type(request.META["wsgi.input"]).__name__
    return HttpResponse(f"{len(data)} {kind}".encode())


#: /slow/ views wait for this (tests set it); started tells the test one is running.
SLOW_RELEASE = threading.Event()
SLOW_STARTED = threading.Event()


def slow(request):
    SLOW_STARTED.set()
    SLOW_RELEASE.wait(10)
    return HttpResponse(b"slow done")


urlpatterns = [path("whoami/", whoami), path("upload/", upload), path("slow/", slow)]


@channel_session_user_from_http
def ws_connect(message, **kwargs):
    message.reply_channel.send({"accept": True})


@channel_session_user
def ws_receive(message, **kwargs):
    # What a careless app does: shows the client its own reply channel.
    message.reply_channel.send(
        {"text": f"{message.user.get_username() or 'anonymous'} {message.reply_channel.name}"})


def http_echo(message, **kwargs):
    message.reply_channel.send({"status": 200, "content": b"%d" % len(message["body"])})


channel_routing = [
    route("websocket.connect", ws_connect),
    route("websocket.receive", ws_receive),
    route("http.request", http_echo, path=r"^/chan/"),
]
