"""Sessions for consumers: per-connection channel sessions and the HTTP session.

* **Channel session** (``@channel_session``): a Django session keyed by the
  message's reply channel, so every message of one WebSocket connection sees
  the same dict. Stored in ``CHANNEL_SESSION_ENGINE`` (default: the project's
  ``SESSION_ENGINE``), which must keep data server-side.

  A channel session is never a login cookie: its key is an HMAC of the reply
  channel under ``SECRET_KEY`` (a client that learns its reply channel name
  cannot compute it), and it lives in its own namespace of the engine
  (:func:`channel_session_store`: a distinct signing salt, cache prefix and
  file prefix), so even a leaked key sent as ``Cookie: sessionid=...`` loads
  an empty, anonymous HTTP session.
* **HTTP session** (``@http_session``): the user's ordinary Django session,
  found from the session cookie in the message's ``headers`` (the WebSocket
  handshake or an ``http.request``).

Decorators find the message as the first or second positional argument, so
they work on functions ``f(message)`` and on methods ``f(self, message)``
(1.x's ``@http_session`` did not work on methods).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import import_module
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase
from django.core.exceptions import ImproperlyConfigured
from django.http.cookie import parse_cookie
from django.utils.crypto import salted_hmac

from .message import Message

__all__ = [
    "channel_session",
    "http_session",
    "channel_and_http_session",
    "session_for_reply_channel",
    "session_key_for_reply_channel",
    "channel_session_store",
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


_KEY_SALT = "chanlite.sessions.channel_session_key"
_STORE_CACHE_PREFIX = "chanlite.channel_session."
_STORE_FILE_PREFIX = "chanlite-channel-session-"
_stores: dict[type, type] = {}


def session_key_for_reply_channel(reply_channel: str) -> str:
    """The channel session key of ``reply_channel``: ``"chn"`` + 37 hex digits
    of an HMAC-SHA256 under ``SECRET_KEY``.

    Keyed, so a reply channel name (which a client may learn: it is in every
    message its connection causes) never yields the key; stable across
    processes that share ``SECRET_KEY``, so every worker finds the same
    session. 40 characters of ``[a-z0-9]``: valid for every Django engine
    (the db column holds 40, the file engine allows only these characters).
    """
    digest = salted_hmac(_KEY_SALT, reply_channel, algorithm="sha256").hexdigest()
    return "chn" + digest[:37]


def channel_session_store() -> type[SessionBase]:
    """The ``SessionStore`` class channel sessions use: the configured engine's
    store in a namespace of its own.

    Why: Django's ``SessionMiddleware`` loads whatever key a cookie names
    from ``SESSION_ENGINE``. Channel sessions hold logins
    (``channel_session_user_from_http`` copies the user in), so they must
    never be readable as an HTTP session. This subclass has its own class
    name, which Django puts in the signing salt of encoded session data
    (``SessionBase.key_salt``: the db, cached_db and file engines then fail
    the HTTP store's signature check and return an empty session), its own
    ``cache_key_prefix`` (cache engines) and its own ``file_prefix`` (file
    engine), so the HTTP store never even finds the data.
    """
    base = _engine().SessionStore
    store = _stores.get(base)
    if store is None:
        attrs: dict[str, Any] = {
            "__module__": __name__,
            "__qualname__": "ChannelSessionStore",
            "__doc__": f"Channel sessions, namespaced apart from {base.__module__}.SessionStore.",
        }
        if isinstance(getattr(base, "cache_key_prefix", None), str):
            attrs["cache_key_prefix"] = _STORE_CACHE_PREFIX + base.cache_key_prefix

        def __init__(self: Any, session_key: str | None = None) -> None:
            base.__init__(self, session_key)
            if hasattr(self, "file_prefix"):
                self.file_prefix = _STORE_FILE_PREFIX

        attrs["__init__"] = __init__
        store = _stores[base] = type("ChannelSessionStore", (base,), attrs)
    return store


def session_for_reply_channel(reply_channel: str) -> SessionBase:
    """The channel session store of ``reply_channel`` (loaded, not yet saved)."""
    key = session_key_for_reply_channel(reply_channel)
    store = channel_session_store()(session_key=key)
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
        from .ordering import enforce_ordering  # noqa: PLC0415 — PEP 562: loaded on first use

        return enforce_ordering
    raise AttributeError(f"module 'chanlite.sessions' has no attribute {name!r}")
