"""Origin checks as ``websocket.connect`` consumer decorators (1.x's
``channels.security.websockets``).

A browser sends the page's origin with every WebSocket handshake; a page on
another site can open a socket to yours with the user's cookies, so consumers
that trust the session should check it::

    from chanlite.security.websockets import allowed_hosts_only

    @allowed_hosts_only
    def ws_connect(message):
        message.reply_channel.send({"accept": True})

    class Chat(WebsocketConsumer):
        @allowed_hosts_only
        def connect(self, message, **kwargs):
            super().connect(message, **kwargs)

A rejected handshake raises :class:`~chanlite.exceptions.DenyConnection`, so
the worker answers ``{"close": True}`` and the client gets HTTP 403, as in
1.x. The interface server's own origin check (``allowed_origins`` in the
server settings) still applies first; these decorators are for projects that
check per consumer, as 1.x projects did.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.http.request import validate_host

from ..exceptions import DenyConnection
from ..message import Message
from ..sessions import _header_pairs

__all__ = ["BaseOriginValidator", "AllowedHostsOnlyOriginValidator", "allowed_hosts_only"]


class BaseOriginValidator:
    """Decorator class: check the ``origin`` header before the consumer runs.

    A missing, empty or non-ASCII origin is rejected; otherwise subclasses
    decide in :meth:`validate_origin`. Works on functions (message first)
    and methods (message after ``self``).
    """

    def __init__(self, func: Any) -> None:
        functools.update_wrapper(self, func)
        self.func = func

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # As a method of a class consumer: bind like a function would.
        if instance is None:
            return self
        return functools.partial(self.__call__, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        message = next((a for a in args[:2] if isinstance(a, Message)), None)
        if message is None:
            raise ValueError(
                f"@{type(self).__name__} needs a consumer called with a Message (first "
                "argument, or second after self)"
            )
        origin = self.get_origin(message)
        if not self.validate_origin(message, origin):
            raise DenyConnection
        return self.func(*args, **kwargs)

    def get_header(self, message: Message, name: bytes) -> list:
        """``[value]`` of the first header ``name``; KeyError when absent.
        Accepts the ASGI list of pairs and the dict form 1.1 allowed."""
        wanted = name.lower()
        for pair in _header_pairs(message.content.get("headers")):
            try:
                key, value = pair[0], pair[1]
            except (IndexError, TypeError, KeyError):
                continue
            key_bytes = key.encode("latin-1") if isinstance(key, str) else key
            if isinstance(key_bytes, bytes) and key_bytes.lower() == wanted:
                return [value]
        raise KeyError(f"no header named {name!r}")

    def get_origin(self, message: Message) -> str:
        """The origin as text; DenyConnection when missing, empty or not ASCII."""
        try:
            value = self.get_header(message, b"origin")[0]
        except KeyError:
            raise DenyConnection from None
        if isinstance(value, str):
            value = value.encode("utf-8")
        try:
            origin = bytes(value).decode("ascii")
        except (UnicodeDecodeError, TypeError):
            raise DenyConnection from None
        if not origin:
            raise DenyConnection
        return origin

    def validate_origin(self, message: Message, origin: str) -> bool:
        """True to let the connection through. Subclasses implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement validate_origin(message, origin)"
        )


class AllowedHostsOnlyOriginValidator(BaseOriginValidator):
    """Accept only origins whose host is in ``ALLOWED_HOSTS`` (Django's
    ``validate_host`` rules); with ``DEBUG`` and empty ``ALLOWED_HOSTS``,
    localhost, 127.0.0.1 and [::1] — as Django itself allows then."""

    def validate_origin(self, message: Message, origin: str) -> bool:
        allowed_hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed_hosts:
            allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
        try:
            hostname = urlparse(origin).hostname
        except ValueError:
            return False
        if hostname and ":" in hostname:
            hostname = f"[{hostname}]"  # urlparse drops an IPv6 host's brackets
        return bool(hostname) and validate_host(hostname, allowed_hosts)


allowed_hosts_only = AllowedHostsOnlyOriginValidator
