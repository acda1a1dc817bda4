"""Sessions for consumers: per-connection channel sessions and the HTTP session.

* **Channel session** (``@channel_session``): a Django session keyed by the
  message's reply channel, so every message of one WebSocket connection sees
  the same dict. Stored in ``CHANNEL_SESSION_ENGINE`` (default: the project's
  ``SESSION_ENGINE``), which must keep data server-side.
* **HTTP session** (``@http_session``): the user's ordinary Django session,
  found from the session cookie in the message's ``headers`` (the WebSocket
  handshake or an ``http.request``).

Decorators find the message as the first or second positional argument, so
they work on functions ``f(message)`` and on methods ``f(self, message)``
(1.x's ``@http_session`` did not work on methods).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from importlib import import_module
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http.cookie import parse_cookie

from .message import Message

__all__ = [
    "channel_session",
    "http_session",
    "channel_and_http_session",
    "session_for_reply_channel",
    "session_key_for_reply_channel",
]

F = TypeVar("F", bound=Callable[..., Any])


def find_message(args: tuple, decorator: str) -> Message:
    """The Message among the first two positional arguments (function or method)."""
    for arg in args[:2]:
        if isinstance(arg, Message):
            return arg
    raise ValueError(
        f"@{decorator} needs the consumer to be called with a Message as its first "
        "argument (or second, after self)"
    )


def _engine(setting: str = "CHANNEL_SESSION_ENGINE") -> Any:
    name = getattr(settings, setting, None) or settings.SESSION_ENGINE
    if name == "django.contrib.sessions.backends.signed_cookies":
        raise ImproperlyConfigured(
            "channel sessions cannot use signed-cookie sessions (there is no cookie to "
            "write to); set CHANNEL_SESSION_ENGINE to a server-side engine such as "
            "'django.contrib.sessions.backends.db' or '...cache'"
        )
    return import_module(name)


def session_key_for_reply_channel(reply_channel: str) -> str:
    """A valid, stable session key for a reply channel (32 chars, like Django's)."""
    return "chn" + hashlib.sha256(reply_channel.encode("utf-8")).hexdigest()[:29]


def session_for_reply_channel(reply_channel: str) -> SessionBase:
    """The channel session store of ``reply_channel`` (loaded, not yet saved)."""
    key = session_key_for_reply_channel(reply_channel)
    store = _engine().SessionStore(session_key=key)
    # Loading an unknown key makes Django forget it (it would mint a random
    # key on save); load first, then put our deterministic key back.
    store._get_session()
    store._session_key = key
    return store


def channel_session(func: F) -> F:
    """Give ``message.channel_session``, one session per reply channel.

    Saved after the consumer returns if modified (also when it raised, so a
    connection's state stays consistent with what already happened).
    """

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "channel_session")
        if "channel_session" in message.__dict__:  # an outer decorator loaded it
            return func(*args, **kwargs)
        if message.reply_channel is None:
            raise ValueError(
                f"@channel_session on {func.__qualname__}: the message on "
                f"{message.channel.name!r} has no reply_channel, so there is no "
                "connection to keep a session for"
            )
        session = session_for_reply_channel(message.reply_channel.name)
        if not session.exists(session.session_key):
            try:
                session.save(must_create=True)
            except CreateError:
                # Another worker created it first: use theirs.
                session = session_for_reply_channel(message.reply_channel.name)
        message.channel_session = session
        try:
            return func(*args, **kwargs)
        finally:
            if session.modified and not session.is_empty():
                session.save()

    return inner  # type: ignore[return-value]


def _header_pairs(headers: Any) -> list:
    """``headers`` as ``(name, value)`` pairs: the ASGI list of pairs, or the
    dict form ``{name: value}`` that Channels 1.1 still accepted (its test
    ``WSClient`` sent that)."""
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers or [])


def _session_key_from_headers(message: Message) -> str | None:
    cookies: dict[str, str] = {}
    for pair in _header_pairs(message.content.get("headers")):
        try:
            name, value = pair
        except (TypeError, ValueError):
            continue
        if isinstance(name, (bytes, str)) and name.lower() in (b"cookie", "cookie"):
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            cookies.update(parse_cookie(text))
    return cookies.get(settings.SESSION_COOKIE_NAME) or None


def http_session(func: F) -> F:
    """Give ``message.http_session``: the Django session named by the cookie in
    the message's headers, or ``None`` when there is no session cookie."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "http_session")
        if "http_session" in message.__dict__:
            return func(*args, **kwargs)
        key = _session_key_from_headers(message)
        session = _engine("SESSION_ENGINE").SessionStore(session_key=key) if key else None
        message.http_session = session
        result = func(*args, **kwargs)
        # Only on success, like a view whose response is never sent. Read it
        # back from the message: channel_and_http_session may have loaded it.
        session = message.__dict__.get("http_session")
        if session is not None and session.modified:
            session.save()
        return result

    return inner  # type: ignore[return-value]


def channel_and_http_session(func: F) -> F:
    """Both sessions; the HTTP session key is remembered in the channel session
    on connect, so later messages (which carry no cookies) get it too."""

    @http_session
    @channel_session
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "channel_and_http_session")
        cookie = settings.SESSION_COOKIE_NAME
        if message.http_session is not None:
            if message.channel_session.get(cookie) != message.http_session.session_key:
                message.channel_session[cookie] = message.http_session.session_key
        elif cookie in message.channel_session:
            engine = _engine("SESSION_ENGINE")
            message.http_session = engine.SessionStore(session_key=message.channel_session[cookie])
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    # 1.x imported enforce_ordering from channels.sessions; it lives in
    # chanlite.ordering (imported lazily: ordering itself imports this module).
    if name == "enforce_ordering":
        from .ordering import enforce_ordering

        return enforce_ordering
    raise AttributeError(f"module 'chanlite.sessions' has no attribute {name!r}")
