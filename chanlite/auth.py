"""Users for consumers: ``message.user`` from the channel or HTTP session.

The usual WebSocket pattern (the seed's)::

    @channel_session_user_from_http
    def ws_connect(message):           # handshake: cookie -> user, kept in channel session
        ...

    @channel_session_user
    def ws_receive(message):           # later frames: user from the channel session
        message.user

Django's ``auth.get_user`` only needs ``request.session``, so a stand-in
request carrying the session is enough; the session auth hash is copied too,
so a password change logs the WebSocket user out as it would a view (only
the login: the rest of the channel session, the connection's state, stays).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import auth
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

from .sessions import channel_and_http_session, channel_session, find_message, http_session

__all__ = [
    "channel_session_user",
    "http_session_user",
    "channel_session_user_from_http",
    "channel_and_http_session_user_from_http",
    "transfer_user",
]

F = TypeVar("F", bound=Callable[..., Any])


class _SessionRequest:
    """The part of an HttpRequest that ``django.contrib.auth.get_user`` reads."""

    def __init__(self, session: Any) -> None:
        self.session = session


class _LoginOnly:
    """The channel session as ``auth.get_user`` sees it: its ``flush()`` logs
    the user out without emptying the rest of the session.

    Why: when the session auth hash no longer matches (the password changed),
    Django flushes the *whole* session — right for a browser session, wrong
    for a channel session, which also holds the connection's own state
    (``message.channel_session["room"]``): a consumer reading it after the
    logout would raise ``KeyError``. The WebSocket stays connected as an
    anonymous user and keeps its state. ``cycle_key()`` (Django re-keying a
    session verified with a fallback ``SECRET_KEY``) keeps the key, because a
    channel session's key is derived from its reply channel.
    """

    def __init__(self, session: Any) -> None:
        self._session = session

    def __getitem__(self, key: str) -> Any:
        return self._session[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._session[key] = value

    def __contains__(self, key: str) -> bool:
        return key in self._session

    def get(self, key: str, default: Any = None) -> Any:
        return self._session.get(key, default)

    def flush(self) -> None:
        for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
            self._session.pop(key, None)

    def cycle_key(self) -> None:
        self._session.modified = True


def _user_from(session: Any, keep_session: bool = False) -> Any:
    if session is None:
        from django.contrib.auth.models import AnonymousUser  # noqa: PLC0415 — models need Django's app registry

        return AnonymousUser()
    return auth.get_user(_SessionRequest(_LoginOnly(session) if keep_session else session))


def transfer_user(from_session: Any, to_session: Any) -> None:
    """Copy the logged-in user (id, backend, auth hash) between sessions."""
    for key in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY):
        if key in from_session:
            to_session[key] = from_session[key]


def channel_session_user(func: F) -> F:
    """``message.user`` from the channel session (AnonymousUser if none logged in)."""

    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "channel_session_user")
        message.user = _user_from(message.channel_session, keep_session=True)
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


def http_session_user(func: F) -> F:
    """``message.user`` from the HTTP session cookie (AnonymousUser without one)."""

    @http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "http_session_user")
        message.user = _user_from(message.http_session)
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


def channel_session_user_from_http(func: F) -> F:
    """On connect: log the cookie's user into the channel session, so later
    messages decorated with ``@channel_session_user`` see the same user."""

    @http_session_user
    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "channel_session_user_from_http")
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


def channel_and_http_session_user_from_http(func: F) -> F:
    """As ``channel_session_user_from_http``, also keeping ``message.http_session``."""

    @http_session_user
    @channel_and_http_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "channel_and_http_session_user_from_http")
        if message.http_session is not None:
            transfer_user(message.http_session, message.channel_session)
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]
