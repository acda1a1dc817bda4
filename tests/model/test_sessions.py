"""Channel and HTTP sessions through real cookies and the configured SESSION_ENGINE."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured

from chanlite.generic import WebsocketConsumer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import Router, route, route_class
from chanlite.sessions import (
    channel_and_http_session,
    channel_session,
    channel_session_store,
    http_session,
    session_for_reply_channel,
    session_key_for_reply_channel,
)
from chanlite.worker import dispatch


@pytest.fixture
def layer():
    return InMemoryChannelLayer()


@pytest.fixture
def empty_cache():
    """The locmem cache outlives a test (and a whole pytest run when mutmut
    runs pytest several times in one process): a session a test counts in it
    must start from nothing."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def cookie_header(session_key):
    return [
        [b"host", b"testserver"],
        [b"cookie", f"csrftoken=x; {django_settings.SESSION_COOKIE_NAME}={session_key}".encode()],
    ]


@channel_session
def count(message):
    message.channel_session["n"] = message.channel_session.get("n", 0) + 1
    message.reply_channel.send({"text": str(message.channel_session["n"])})


@pytest.mark.django_db
def test_channel_session_is_per_reply_channel_and_stored_in_engine(layer):
    router = Router([route("websocket.receive", count)])
    for reply in ("r!a", "r!a", "r!b", "r!a"):
        dispatch(layer, router, "websocket.receive", {"reply_channel": reply, "text": ""})
    texts = [layer.receive(["r!"])[1]["text"] for _ in range(4)]
    assert texts == ["1", "2", "1", "3"]
    # it really is in the db-backed SESSION_ENGINE, under a key derived from the
    # channel, readable only through the channel-session namespace of the engine
    key = session_key_for_reply_channel("r!a")
    assert Session.objects.filter(session_key=key).exists()
    assert channel_session_store()(session_key=key).load() == {"n": 3}
    assert SessionStore(session_key=key).load() == {}  # never an HTTP session
    assert session_for_reply_channel("r!b")["n"] == 1


def test_channel_session_needs_reply_channel(layer):
    router = Router([route("thumbnails", count)])
    with pytest.raises(ValueError, match="has no reply_channel"):
        dispatch(layer, router, "thumbnails", {})


def test_channel_session_with_cache_engine_needs_no_database(layer, settings, empty_cache):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    router = Router([route("websocket.receive", count)])
    dispatch(layer, router, "websocket.receive", {"reply_channel": "r!cache", "text": ""})
    dispatch(layer, router, "websocket.receive", {"reply_channel": "r!cache", "text": ""})
    assert [layer.receive(["r!"])[1]["text"] for _ in range(2)] == ["1", "2"]


def test_channel_session_engine_setting_and_signed_cookies_refused(layer, settings, empty_cache):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    router = Router([route("websocket.receive", count)])
    with pytest.raises(ImproperlyConfigured, match="CHANNEL_SESSION_ENGINE"):
        dispatch(layer, router, "websocket.receive", {"reply_channel": "r!x", "text": ""})
    settings.CHANNEL_SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    dispatch(layer, router, "websocket.receive", {"reply_channel": "r!x", "text": ""})
    assert layer.receive(["r!"])[1] == {"text": "1"}


@pytest.mark.django_db
def test_channel_session_saved_even_when_consumer_raises(layer):
    @channel_session
    def failing(message):
        message.channel_session["seen"] = True
        raise RuntimeError

    router = Router([route("websocket.receive", failing)])
    with pytest.raises(RuntimeError):
        dispatch(layer, router, "websocket.receive", {"reply_channel": "r!f"})
    assert session_for_reply_channel("r!f")["seen"] is True


@pytest.mark.django_db
def test_http_session_from_cookie_and_saved_on_change(layer):
    session = SessionStore()
    session["cart"] = [1]
    session.create()

    @http_session
    def connect(message):
        message.reply_channel.send(
            {"text": repr(message.http_session and message.http_session["cart"])}
        )
        if message.http_session is not None:
            message.http_session["cart"] = [1, 2]

    router = Router([route("websocket.connect", connect)])
    dispatch(layer, router, "websocket.connect",
             {"reply_channel": "r!1", "path": "/", "headers": cookie_header(session.session_key)})
    dispatch(
        layer, router, "websocket.connect", {"reply_channel": "r!2", "path": "/", "headers": []}
    )
    assert layer.receive(["r!"])[1] == {"text": "[1]"}
    assert layer.receive(["r!"])[1] == {"text": "None"}
    assert SessionStore(session_key=session.session_key).load() == {"cart": [1, 2]}


@pytest.mark.django_db
def test_http_session_works_on_methods(layer):
    session = SessionStore()
    session["who"] = "alice"
    session.create()

    class C(WebsocketConsumer):
        @http_session
        def connect(self, message, **kwargs):
            self.send(text=message.http_session["who"])

    dispatch(layer, Router([route_class(C)]), "websocket.connect",
             {"reply_channel": "r!1", "path": "/", "headers": cookie_header(session.session_key)})
    assert layer.receive(["r!"])[1] == {"text": "alice"}


@pytest.mark.django_db
def test_channel_and_http_session_carries_http_session_to_later_messages(layer):
    session = SessionStore()
    session["who"] = "bob"
    session.create()

    @channel_and_http_session
    def consumer(message):
        message.reply_channel.send({"text": message.http_session["who"]})

    router = Router([route(["websocket.connect", "websocket.receive"], consumer)])
    dispatch(layer, router, "websocket.connect",
             {"reply_channel": "r!1", "path": "/", "headers": cookie_header(session.session_key)})
    dispatch(layer, router, "websocket.receive", {"reply_channel": "r!1", "path": "/", "text": "x"})
    assert [layer.receive(["r!"])[1]["text"] for _ in range(2)] == ["bob", "bob"]


def test_decorators_need_a_message():
    with pytest.raises(ValueError, match="needs the consumer to be called with a Message"):
        count("not a message")


# --- pinned details (issue 20: mutation-testing survivors)


def test_channel_session_key_is_the_documented_hmac():
    """Stable across processes and releases (sessions outlive upgrades): "chn"
    + 37 hex digits of HMAC-SHA256 under SECRET_KEY, 40 characters in all."""
    from django.utils.crypto import salted_hmac

    from chanlite import sessions

    key = sessions.session_key_for_reply_channel("websocket.send!abc")
    digest = salted_hmac(sessions._KEY_SALT, "websocket.send!abc", algorithm="sha256")
    assert key == "chn" + digest.hexdigest()[:37]
    assert len(key) == 40


@pytest.mark.parametrize("headers", [
    {"cookie": "sessionid=k1"},  # the dict form Channels 1.1's WSClient sent
    [["cookie", "sessionid=k1"]],  # str name and value
    [[b"x-bad"], [5, b"v"], [b"Cookie", b"sessionid=k1"]],  # malformed pairs are skipped
])
def test_session_cookie_is_found_in_every_header_form(headers):
    from chanlite.message import Message
    from chanlite.sessions import _session_key_from_headers

    message = Message({"headers": headers}, "websocket.connect", InMemoryChannelLayer())
    assert _session_key_from_headers(message) == "k1"


def test_enforce_ordering_is_still_importable_from_sessions_and_nothing_else_is():
    import chanlite.sessions
    from chanlite.ordering import enforce_ordering
    from chanlite.sessions import enforce_ordering as old_home

    assert old_home is enforce_ordering
    with pytest.raises(
        AttributeError, match=r"^module 'chanlite.sessions' has no attribute 'nope'$"
    ):
        chanlite.sessions.nope  # noqa: B018


def test_decorators_find_the_message_only_in_the_first_two_arguments():
    from chanlite.message import Message
    from chanlite.sessions import find_message

    message = Message({"reply_channel": "r!x"}, "websocket.receive", InMemoryChannelLayer())
    assert find_message((message,), "channel_session") is message
    assert find_message(("self", message), "channel_session") is message
    with pytest.raises(ValueError) as excinfo:
        find_message(("self", "other", message), "channel_session")
    assert str(excinfo.value) == (
        "@channel_session needs the consumer to be called with a Message as its first "
        "argument (or second, after self)")


def test_signed_cookie_channel_sessions_are_refused_saying_what_to_set(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    with pytest.raises(ImproperlyConfigured) as excinfo:
        channel_session_store()
    assert str(excinfo.value) == (
        "channel sessions cannot use signed-cookie sessions (there is no cookie to write to); "
        "set CHANNEL_SESSION_ENGINE to a server-side engine such as "
        "'django.contrib.sessions.backends.db' or '...cache'")


@pytest.mark.parametrize("engine", ["cache", "file"])
def test_the_channel_session_store_is_made_once_per_engine_in_a_namespace_of_its_own(
        engine, settings, monkeypatch, tmp_path):
    """The store class itself (not one cached by an earlier test): its own
    class name (Django salts encoded data with it), cache key prefix and file
    prefix, so the HTTP store of the same engine never reads channel sessions."""
    from importlib import import_module

    import chanlite.sessions

    monkeypatch.setattr(chanlite.sessions, "_stores", {})
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{engine}"
    settings.SESSION_FILE_PATH = str(tmp_path)
    base = import_module(settings.SESSION_ENGINE).SessionStore
    store = channel_session_store()
    assert channel_session_store() is store  # made once
    assert issubclass(store, base) and store is not base
    assert (store.__name__, store.__qualname__, store.__module__) == (
        "ChannelSessionStore", "ChannelSessionStore", "chanlite.sessions")
    assert store.__doc__ == (
        f"Channel sessions, namespaced apart from {base.__module__}.SessionStore.")
    session = store(session_key="chn" + "0" * 37)
    assert session.session_key == "chn" + "0" * 37
    if engine == "cache":
        assert store.cache_key_prefix == "chanlite.channel_session." + base.cache_key_prefix
    else:
        assert session.file_prefix == "chanlite-channel-session-"
        assert base().file_prefix != session.file_prefix
