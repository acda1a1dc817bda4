"""``WSClient``: a WebSocket connection (cookies, headers, login) without a server.

It builds the messages a chanlite server would build (spec:
``/work/shared/spec/asgi1-messages.md``): ``websocket.connect`` with
``headers`` as ``[bytes, bytes]`` pairs, ``query_string`` as bytes,
``client``/``server`` and ``order`` 0; ``websocket.receive`` with ``order``
1, 2, 3…; ``websocket.disconnect`` with ``code`` and the next ``order``.
So consumers decorated with ``@channel_session_user_from_http`` or
``enforce_ordering`` see exactly what they would in production.

``session`` is the Django (HTTP) session whose cookie the client sends, as
with Django's test client: ``login()`` / ``force_login()`` log a user into it,
and ``@http_session_user`` / ``http_user = True`` consumers see that user.
It is created on first use only, so tests that never touch it need no
database.
"""

from __future__ import annotations

import copy
import json as json_module
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import authenticate, login
from django.http import HttpRequest

from ..server.http import check_response
from ..server.websocket import check_send, handshake_action
from ..sessions import session_for_reply_channel
from .client import Client

__all__ = ["WSClient", "Headers"]

_ORDERED = ("websocket.connect", "websocket.receive", "websocket.disconnect")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _encode_cookies(cookies: dict[str, str]) -> bytes:
    """A Cookie header Django's ``parse_cookie`` reads back exactly (values
    with ``;`` or spaces are quoted, as 1.x's ``SimpleCookie`` output was)."""
    jar = SimpleCookie()
    for key, value in cookies.items():
        jar[key] = value
    return "; ".join(morsel.OutputString() for morsel in jar.values()).encode("latin-1")


class Headers(list):
    """ASGI header pairs that also answer ``headers["cookie"]`` (1.x's
    ``WSClient.headers`` was a dict): the value of the first header of that
    name. Integer indexes and slices work as on any list."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (str, bytes)):
            wanted = _bytes(key).lower()
            for name, value in self:
                if name.lower() == wanted:
                    return value
            raise KeyError(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, (str, bytes)):
            wanted = _bytes(key).lower()
            return any(name.lower() == wanted for name, _ in self)
        return super().__contains__(key)


class WSClient(Client):
    """A fake WebSocket (and HTTP) client; JSON text frames by default.

    Parameters (besides those of :class:`Client`):
        host: the ``Host`` header and ``server`` host (default ``testserver``).
        client_address: the ``client`` ``[host, port]`` of the messages.
    """

    def __init__(self, *args: Any, ordered: bool = False, host: str = "testserver",
                 client_address: tuple[str, int] = ("127.0.0.1", 50000), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: 1.x's ``ordered=True``: every message gets the next ``order`` of a
        #: single counter (starting at 0), whatever its channel, and setting
        #: ``order`` in the content yourself is an error.
        self.ordered = ordered
        self.host = host
        self.client_address = [client_address[0], client_address[1]]
        self.cookies: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._session: Any = None
        self.path: str | None = None
        self.order = 0
        #: What the server would think of this connection, from the replies
        #: read so far: "websocket" / "http" protocol and its state.
        self._protocol: str | None = None
        self._state = "idle"

    # ------------------------------------------------------- cookies & headers

    def set_cookie(self, key: str, value: str) -> None:
        """Send cookie ``key=value`` with the handshake (and HTTP requests)."""
        self.cookies[key] = value

    def set_header(self, name: str | bytes, value: str | bytes) -> None:
        """Send a header with the handshake; cookies go through ``set_cookie``."""
        key = _bytes(name).lower()
        if key == b"cookie":
            raise ValueError("use set_cookie(key, value) for cookies")
        self._headers[key] = _bytes(value)

    def get_cookies(self) -> dict[str, str]:
        """Cookies to send: ``cookies`` plus the session cookie once a session exists."""
        cookies = dict(self.cookies)
        if self._session is not None and self._session.session_key:
            cookies[settings.SESSION_COOKIE_NAME] = self._session.session_key
        return cookies

    @property
    def headers(self) -> Headers:
        """The handshake headers as ASGI ``[name, value]`` byte pairs (a list
        that also answers ``headers["cookie"]``, as 1.x's dict did)."""
        headers = {b"host": _bytes(self.host), **self._headers}
        cookies = self.get_cookies()
        if cookies:
            headers[b"cookie"] = _encode_cookies(cookies)
        return Headers([name, value] for name, value in headers.items())

    # ---------------------------------------------------------------- sessions

    @property
    def session(self) -> Any:
        """The Django session this client's cookie names (created and saved on first use)."""
        if self._session is None:
            if not apps.is_installed("django.contrib.sessions"):
                raise RuntimeError(
                    "add 'django.contrib.sessions' to INSTALLED_APPS to use client.session"
                )
            store = import_module(settings.SESSION_ENGINE).SessionStore()
            store.save()
            self._session = store
        return self._session

    @property
    def channel_session(self) -> Any:
        """The channel session consumers keep for this client's reply channel."""
        return session_for_reply_channel(self.reply_channel)

    def login(self, **credentials: Any) -> bool:
        """Log in with ``authenticate(**credentials)``; False if that fails."""
        user = authenticate(**credentials)
        if user is None or not getattr(user, "is_active", True):
            return False
        self._login(user, getattr(user, "backend", None))
        return True

    def force_login(self, user: Any, backend: str | None = None) -> None:
        """Log ``user`` in without credentials (first configured backend by default)."""
        if backend is None:
            backend = settings.AUTHENTICATION_BACKENDS[0]
        self._login(user, backend)

    def _login(self, user: Any, backend: str | None) -> None:
        request = HttpRequest()
        request.session = self.session
        login(request, user, backend)
        self.session.save()

    def logout(self) -> None:
        """Forget the session (the next handshake carries no session cookie)."""
        if self._session is not None:
            self._session.flush()
        self._session = None

    # --------------------------------------------------------------- messages

    def build(self, channel: str, content: dict | None = None, text: Any = None,
              path: str | None = None) -> dict:
        """The message ``send`` would send (exposed for tests of the format)."""
        content = copy.deepcopy(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        if self.ordered and "order" in content:
            raise ValueError('do not set "order" yourself on a WSClient(ordered=True)')
        if path is None:
            path = self.path or "/"
        path, _, query = path.partition("?")
        content.setdefault("path", path)
        if channel == "websocket.connect" or channel == "http.request":
            content.setdefault("headers", list(self.headers))
            content.setdefault("query_string", query.encode("latin-1"))
            content.setdefault("client", list(self.client_address))
            content.setdefault("server", [self.host, 80])
        if self.ordered:
            content["order"] = self.order
            self.order += 1
        elif channel in _ORDERED:
            if channel == "websocket.connect":
                self.order = 0
                self.path = path
            elif "order" not in content:
                self.order += 1
            content.setdefault("order", self.order)
        if channel == "websocket.disconnect":
            content.setdefault("code", 1000)
        if text is None:
            text = content.pop("text", None)
        if text is not None:
            content["text"] = text if isinstance(text, str) else json_module.dumps(text)
        return content

    def send(self, to: str, content: dict | None = None, text: Any = None,  # type: ignore[override]
             path: str | None = None) -> None:
        """Send a message as the server would: ``text`` that is not a str is
        JSON-encoded; ``path`` defaults to the last connect's path (or "/")
        and may carry ``?query``; ``order`` is numbered per connection."""
        message = self.build(to, content, text, path)
        self.channel_layer.send(to, message)
        self._track_request(to, message)

    def _track_request(self, channel: str, message: dict) -> None:
        """Note what the server would now expect on the reply channel."""
        if channel == "websocket.connect":
            self._protocol, self._state = "websocket", "connecting"
        elif channel == "http.request":
            self._protocol, self._state = "http", "waiting"
        elif channel.startswith("websocket.") and self._protocol is None:
            # A test that starts mid-connection (1.x tests often did).
            self._protocol, self._state = "websocket", "open"

    def _check_reply(self, reply: Any) -> Any:
        """Validate ``reply`` as the server would and advance the state it
        tracks; AssertionError (the test fails) where the server would refuse
        it, with the server's own message."""
        if self._protocol == "websocket":
            where = f"websocket reply on {self.reply_channel}"
            if not isinstance(reply, dict):
                raise AssertionError(f"invalid {where}: must be a dict, not {type(reply).__name__}")
            if self._state == "closed":
                raise AssertionError(
                    f"{where} after the connection was closed (or rejected) by an earlier "
                    f"reply: the server never delivers it: {reply!r:.100}"
                )
            problem = check_send(reply)
            if problem:
                what = ("refuses the handshake with 403" if self._state == "connecting"
                        else "drops the reply")
                raise AssertionError(
                    f"invalid {where}: {problem} — the server logs this and {what}"
                )
            if self._state == "connecting":
                action = handshake_action(reply)
                if action == "reject":
                    self._state = "closed"
                    return reply
                if action == "accept":
                    self._state = "open"
            if reply.get("close", False) is not False and self._state == "open":
                self._state = "closed"
        elif self._protocol == "http":
            where = f"http.response on {self.reply_channel}"
            if self._state == "done":
                raise AssertionError(
                    f"{where} after the response was complete (more_content was False): the "
                    f"server never delivers it: {reply!r:.100}"
                )
            problem = check_response(reply, started=self._state == "streaming")
            if problem:
                raise AssertionError(
                    f"invalid {where}: {problem} — the server answers 500 "
                    "(or aborts a started response)"
                )
            self._state = "streaming" if reply.get("more_content", False) else "done"
        return reply

    def consume(self, channel: str, fail_on_none: bool = True,  # type: ignore[override]
                check_accept: bool = True) -> Any:
        """Run the next message's consumer and return what it returned; after
        ``websocket.connect`` check (with ``check_accept``) that the consumer
        accepted the connection."""
        before = self.last_message
        result = super().consume(channel, fail_on_none=fail_on_none)
        ran = self.last_message is not before
        if channel == "websocket.connect" and check_accept and ran:
            self.check_accept()
        return result

    def check_accept(self) -> None:
        """Assert the next reply accepts the handshake (``accept: True``, or a
        frame, which accepts implicitly and is kept for ``receive``)."""
        reply = Client.receive(self)
        if reply is None:
            raise AssertionError(
                "the websocket.connect consumer sent nothing: the server would reject "
                "the handshake after its timeout; send {'accept': True}"
            )

        self._check_reply(reply)  # invalid: fails here with the server's message
        if handshake_action(reply) != "accept":
            raise AssertionError(
                f"the connection was rejected: {reply!r} (expected {{'accept': True}})"
            )
        rest = {k: v for k, v in reply.items() if k != "accept"}
        if rest:
            self.unreceive(rest)

    def send_and_consume(self, channel: str, content: dict | None = None,  # type: ignore[override]
                         text: Any = None, path: str | None = None, fail_on_none: bool = True,
                         check_accept: bool = True) -> Any:
        """``send`` then ``consume``: one WebSocket event through its consumer."""
        self.send(channel, content, text, path)
        return self.consume(channel, fail_on_none=fail_on_none, check_accept=check_accept)

    def receive(self, json: bool = True) -> Any:  # type: ignore[override]
        """The next reply: decoded JSON of a text frame (``json=True``), the
        text itself (``json=False``), or the whole message dict when it has no
        text (``accept``, ``close``, ``bytes``, HTTP responses). None if none."""
        from_inbox = bool(self._inbox)
        content = Client.receive(self)
        if content is None:
            return None
        if not from_inbox:  # put back by check_accept/unreceive: already checked
            self._check_reply(content)
        text = content.get("text")
        if not isinstance(text, str):
            return content
        if not json:
            return text
        try:
            return json_module.loads(text)
        except ValueError:
            raise AssertionError(
                f"the reply text is not JSON: {text!r:.80}; use receive(json=False)"
            ) from None

    # ----------------------------------------------------------- conveniences

    def connect(self, path: str = "/", check_accept: bool = True, **content: Any) -> None:
        """``websocket.connect`` to ``path`` through its consumer."""
        self.send_and_consume("websocket.connect", content, path=path, check_accept=check_accept)

    def disconnect(self, code: int = 1000) -> None:
        """``websocket.disconnect`` (with the next ``order``) through its consumer."""
        self.send_and_consume("websocket.disconnect", {"code": code})
