"""Issue 13 item 3: a channel session is not a login cookie.

The attack: a WebSocket consumer logs the cookie's user into its channel
session. A client that learns a reply channel name (apps show or echo it)
used to compute the channel session key as ``"chn" + sha256(name)`` and send
it as ``Cookie: sessionid=...`` to act as that user on every view. Reply
channels were also a counter (``...!1``, ``...!2``), so one's own name gave
away everyone else's.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chanlite.sessions import session_key_for_reply_channel

from . import rawclient as raw
from .server_app import channel_routing

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app_server(chanlite_server, settings):
    settings.ROOT_URLCONF = "tests.security.server_app"
    return chanlite_server(routing=channel_routing)


def alice_cookie() -> str:
    user = User.objects.create_user("alice", password="pw")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def open_socket(server, cookie: str):
    sock = raw.connect(server)
    sock.sendall(raw.ws_handshake("/ws/", {"Cookie": f"sessionid={cookie}"}))
    response = raw.read_head(sock)
    assert raw.status_of(response) == 101, response
    sock.sendall(raw.ws_frame("who"))
    user, reply_channel = raw.ws_read_text(sock).split(" ")
    return sock, user, reply_channel


def test_reply_channel_names_are_unguessable(app_server):
    names = []
    sockets = []
    for _ in range(3):
        sock, _user, name = open_socket(app_server, "none")
        sockets.append(sock)
        names.append(name)
    for sock in sockets:
        sock.close()
    prefix = names[0].rpartition("!")[0] + "!"
    suffixes = [name[len(prefix):] for name in names]
    assert all(name.startswith(prefix) for name in names)  # one process, one prefix
    # Not a counter: a random part of at least 20 letters/digits per connection.
    assert not any(s.isdigit() for s in suffixes), suffixes
    assert all(re.fullmatch(r"[A-Za-z0-9]{20,}", s) for s in suffixes), suffixes
    assert len(set(suffixes)) == 3


def test_reply_channel_name_does_not_yield_a_login(app_server):
    sock, user, reply_channel = open_socket(app_server, alice_cookie())
    try:
        assert user == "alice"  # the channel session really holds the login
        # The old derivation, which anyone could compute from the name:
        forged = "chn" + hashlib.sha256(reply_channel.encode()).hexdigest()[:29]
        response = raw.get(app_server, "/whoami/", {"Cookie": f"sessionid={forged}"})
        assert raw.status_of(response) == 200
        assert raw.body_of(response) == b"anonymous"
    finally:
        sock.close()


def test_a_leaked_channel_session_key_is_not_a_login_either(app_server):
    sock, user, reply_channel = open_socket(app_server, alice_cookie())
    try:
        assert user == "alice"
        # Even the real key (say it leaked from a log) loads no user through
        # Django's SessionMiddleware: channel sessions live in their own namespace.
        key = session_key_for_reply_channel(reply_channel)
        assert key != "chn" + hashlib.sha256(reply_channel.encode()).hexdigest()[:29]
        response = raw.get(app_server, "/whoami/", {"Cookie": f"sessionid={key}"})
        assert raw.body_of(response) == b"anonymous"
    finally:
        sock.close()


@pytest.mark.parametrize("engine", ["django.contrib.sessions.backends.cache",
                                    "django.contrib.sessions.backends.cached_db",
                                    "django.contrib.sessions.backends.file"])
def test_channel_sessions_are_namespaced_in_every_builtin_engine(engine, settings, tmp_path):
    from importlib import import_module

    from chanlite.auth import transfer_user
    from chanlite.sessions import session_for_reply_channel

    settings.SESSION_ENGINE = engine
    settings.SESSION_FILE_PATH = str(tmp_path)
    user = User.objects.create_user("bob", password="pw")
    channel = session_for_reply_channel("chanlite.response.abc!xyz")
    login = import_module(engine).SessionStore()
    login["_auth_user_id"] = str(user.pk)
    login["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    login["_auth_user_hash"] = user.get_session_auth_hash()
    transfer_user(login, channel)
    channel.save(must_create=True)
    assert session_for_reply_channel("chanlite.response.abc!xyz")["_auth_user_id"] == str(user.pk)
    http_view = import_module(engine).SessionStore(session_key=channel.session_key)
    assert http_view.load() == {}
