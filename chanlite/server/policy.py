"""What the server decides about a request before any consumer sees it.

The routing questions (does ``http.request`` have a route for this path,
would ``http.disconnect`` reach anyone), the WebSocket origin check, and why
a handshake cannot succeed or did not (no route, no worker taking
``websocket.connect``). Kept apart from the assembly in ``server.py``: all
of it reads only the router, the config, the layer's statistics and (for
origins) Django's ``ALLOWED_HOSTS``.
Composed into :class:`~chanlite.server.server.Server`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from .http import RequestHead  # at run time: scripts/api_docs.py resolves the hints
from .proxy import origin_matches, parse_origin

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer
    from .config import ServerConfig

# Private: its methods are Server's API (documented there, see scripts/api_docs.py).
__all__: list[str] = []


class _HandshakePolicy:
    """Routing, origin and handshake-refusal decisions of :class:`Server`."""

    if TYPE_CHECKING:  # pragma: no cover - provided by Server
        layer: BaseChannelLayer
        config: ServerConfig
        router: Any
        _allowed_origins: list[str] | None

    def websocket_refusal(self, content: dict[str, Any]) -> str | None:
        """Why a ``websocket.connect`` with ``content`` cannot succeed, or None.

        Known without asking a consumer: the routing (the same ROUTING every
        worker of this layer uses) has no route for it, or the layer's
        statistics show nothing is taking ``websocket.connect`` (its oldest
        message has waited half the connect timeout). Such a handshake is
        rejected at once rather than after ``websocket_connect_timeout``.
        """
        router = self.router
        if router is not None:
            if "websocket.connect" not in router.channels:
                return ("no route: the routing has no websocket.connect route, so no worker "
                        "listens on it; add route('websocket.connect', consumer, path=...)")
            if router.match("websocket.connect", content) is None:
                return ("no route: no websocket.connect route matches this path; add "
                        "route('websocket.connect', consumer, path=...) for it")
        waited = self._connect_backlog()
        if waited is not None and waited[1] >= self.config.websocket_connect_timeout / 2:
            return (f"no worker: nothing is taking websocket.connect ({waited[0]} handshake(s) "
                    f"waiting, the oldest for {waited[1]:.0f}s); run embedded workers or "
                    "`manage.py runworker`")
        return None

    def _connect_backlog(self) -> tuple[int, float] | None:
        """``(pending, oldest age)`` of ``websocket.connect``, None if empty/unknown."""
        try:
            stats = self.layer.channel_statistics("websocket.connect")
        except Exception:  # statistics are advice: a failing layer shows up elsewhere
            return None
        if not stats["messages_pending"]:
            return None
        return int(stats["messages_pending"]), float(stats["messages_max_age"])

    def connect_timeout_reason(self) -> str:
        """What a handshake that timed out could have met, for its log line."""
        waited = self._connect_backlog()
        if waited is not None and waited[1] >= self.config.websocket_connect_timeout * 0.9:
            return (f"no worker took it: {waited[0]} websocket.connect message(s) waiting, the "
                    f"oldest for {waited[1]:.0f}s; run embedded workers or `manage.py "
                    "runworker`")
        return ("a worker took websocket.connect but nothing answered: its consumer must reply "
                "{'accept': True} or {'close': True} (or it raised in a worker of another "
                "process: see that worker's log)")

    def has_http_route(self, head: RequestHead) -> bool:
        router = self.router
        if router is None or "http.request" not in router.channels:
            return False
        content = {"path": head.path, "method": head.method}
        return router.match("http.request", content) is not None

    def routes_http_disconnect(self, path: str) -> bool:
        """Whether an ``http.disconnect`` for ``path`` would reach a consumer.

        Sent only then: with a catch-all ``http.request`` route (views in
        workers) and no ``http.disconnect`` route, every request would leave a
        message nobody receives, filling the channel until it expires.
        """
        router = self.router
        if router is None or "http.disconnect" not in router.channels:
            return False
        return router.match("http.disconnect", {"path": path, "reply_channel": ""}) is not None

    def origin_allowed(self, origin: bytes | None, head: RequestHead) -> bool:
        """The WebSocket origin check (``proxy.origin_matches`` says how)."""
        if not self.config.check_origin:
            return True
        if origin is None:
            return True  # no Origin header: not a browser, nothing to protect
        parsed = parse_origin(origin.decode("latin-1"))
        if parsed is None:
            return False  # "null" (opaque) or unparsable
        if self._allowed_origins is None:
            self._allowed_origins = self._origin_patterns()
        # Host patterns taken from ALLOWED_HOSTS name *this* site, so the origin
        # must also have the request's own scheme and port; hosts listed in
        # allowed_origins are other sites the user chose (any scheme/port,
        # unless the entry spells them: "https://app.example.com:8443").
        strict = self.config.check_origin_scheme_port and self.config.allowed_origins is None
        return origin_matches(parsed, self._allowed_origins, head, strict)

    def _origin_patterns(self) -> list[str]:
        if self.config.allowed_origins is not None:
            return list(self.config.allowed_origins)

        hosts = list(getattr(settings, "ALLOWED_HOSTS", []) or [])
        if not hosts and getattr(settings, "DEBUG", False):
            hosts = [".localhost", "127.0.0.1", "[::1]"]  # what Django allows in DEBUG
        return hosts
