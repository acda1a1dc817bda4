"""message.user from real login cookies (django.test.Client) and the channel session."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from chanlite.auth import channel_session_user, channel_session_user_from_http, http_session_user
from chanlite.generic import WebsocketConsumer
from chanlite.routing import Router, route, route_class
from chanlite.worker import dispatch


@pytest.fixture
def logged_in_cookie(db):
    User.objects.create_user("alice", password="pw-alice-1")
    client = Client()
    assert client.login(username="alice", password="pw-alice-1")
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return [[b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={key}".encode()]]


def whoami(message, **kwargs):
    user = message.user
    message.reply_channel.send({"text": user.username if user.is_authenticated else "anon"})


def connect_msg(headers, reply="r!1"):
    return {"reply_channel": reply, "path": "/", "headers": headers, "order": 0}


def recv_msg(reply="r!1", order=1):
    return {"reply_channel": reply, "path": "/", "text": "x", "order": order}


def texts(layer):
    out = []
    while (got := layer.receive(["r!"]))[0] is not None:
        out.append(got[1].get("text"))
        assert len(out) <= 10_000, f"endless replies: {out[:5]!r}..."
    return out


@pytest.mark.django_db
def test_user_from_http_cookie_is_kept_for_later_messages(layer, logged_in_cookie):
    router = Router([
        route("websocket.connect", channel_session_user_from_http(whoami)),
        route("websocket.receive", channel_session_user(whoami)),
    ])
    dispatch(layer, router, "websocket.connect", connect_msg(logged_in_cookie))
    dispatch(layer, router, "websocket.receive", recv_msg())
    # another connection without the cookie is anonymous
    dispatch(layer, router, "websocket.connect", connect_msg([], reply="r!2"))
    dispatch(layer, router, "websocket.receive", recv_msg(reply="r!2"))
    assert texts(layer) == ["alice", "alice", "anon", "anon"]


@pytest.mark.django_db
def test_password_change_logs_the_websocket_user_out(layer, logged_in_cookie):
    router = Router([
        route("websocket.connect", channel_session_user_from_http(whoami)),
        route("websocket.receive", channel_session_user(whoami)),
    ])
    dispatch(layer, router, "websocket.connect", connect_msg(logged_in_cookie))
    user = User.objects.get(username="alice")
    user.set_password("changed-pw-2")
    user.save()
    dispatch(layer, router, "websocket.receive", recv_msg())
    assert texts(layer) == ["alice", "anon"]


@pytest.mark.django_db
def test_password_change_keeps_the_rest_of_the_channel_session(layer, logged_in_cookie):
    """Only the login goes: the connection's own state (docs/sessions-auth.md's
    ``room``) survives, so a consumer reading it does not raise KeyError."""

    def connect(message):
        message.channel_session["room"] = "lobby"
        whoami(message)

    def receive(message):
        whoami(message)
        message.reply_channel.send({"text": message.channel_session["room"]})

    router = Router([
        route("websocket.connect", channel_session_user_from_http(connect)),
        route("websocket.receive", channel_session_user(receive)),
    ])
    dispatch(layer, router, "websocket.connect", connect_msg(logged_in_cookie))
    user = User.objects.get(username="alice")
    user.set_password("changed-pw-2")
    user.save()
    dispatch(layer, router, "websocket.receive", recv_msg())
    dispatch(layer, router, "websocket.receive", recv_msg(order=2))
    assert texts(layer) == ["alice", "anon", "lobby", "anon", "lobby"]


@pytest.mark.django_db
def test_http_session_user(layer, logged_in_cookie):
    router = Router([route("http.request", http_session_user(whoami))])
    dispatch(layer, router, "http.request", connect_msg(logged_in_cookie))
    dispatch(layer, router, "http.request", connect_msg([[b"cookie", b"sessionid=bogus"]]))
    assert texts(layer) == ["alice", "anon"]


@pytest.mark.django_db
def test_class_consumer_http_user(layer, logged_in_cookie):
    class C(WebsocketConsumer):
        http_user = True

        def connect(self, message, **kwargs):
            self.send(text=message.user.username)

        def receive(self, text=None, bytes=None, **kwargs):
            self.send(text="again " + self.message.user.username)

    router = Router([route_class(C)])
    dispatch(layer, router, "websocket.connect", connect_msg(logged_in_cookie))
    dispatch(layer, router, "websocket.receive", recv_msg())
    assert texts(layer) == ["alice", "again alice"]


@pytest.mark.django_db
def test_class_consumer_http_user_and_session(layer, logged_in_cookie):
    class C(WebsocketConsumer):
        http_user_and_session = True

        def receive(self, text=None, bytes=None, **kwargs):
            session = self.message.http_session
            logged_in = session is not None and "_auth_user_id" in session
            self.send(text=f"{self.message.user.username}:{logged_in}")

    router = Router([route_class(C)])
    dispatch(layer, router, "websocket.connect", connect_msg(logged_in_cookie))
    dispatch(layer, router, "websocket.receive", recv_msg())
    assert [m for m in texts(layer) if m] == ["alice:True"]
