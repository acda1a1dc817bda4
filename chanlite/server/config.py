"""Server limits and timeouts, validated once, in one place.

Every number that protects the server from a slow, greedy or broken client
lives here with a default that is safe on the open internet, so the rest of
the server never has to re-check a value. ``ServerConfig.from_settings()``
reads ``settings.CHANLITE_SERVER`` (a dict of the field names below) and then
applies explicit overrides (command-line flags win over settings).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

__all__ = ["ServerConfig"]

_SECONDS = (
    "header_timeout",
    "keepalive_timeout",
    "http_response_timeout",
    "websocket_connect_timeout",
    "websocket_ping_interval",
    "websocket_ping_timeout",
    "websocket_close_timeout",
    "shutdown_timeout",
    "body_idle_timeout",
    "body_timeout",
    "backpressure_timeout",
)
_SIZES = (
    "max_header_size",
    "max_request_body",
    "body_chunk_size",
    "websocket_max_message_size",
    "max_outbound_buffer",
    "body_spool_threshold",
    "max_body_memory",
)


@dataclass
class ServerConfig:
    """Everything the interface server needs to know besides its app.

    Attributes (times in seconds, sizes in bytes):
        host, port: TCP address to listen on (``port=0`` picks a free one).
        unix_socket: listen on this path instead of TCP.
        threads: WSGI thread-pool size (Django views run here).
        max_header_size: request line + headers; above it answer 431.
        max_request_body: request body; above it answer 413.
        body_chunk_size: body bytes per ``http.request``/``http.request.body``
            message (kept well under the layer's ``max_message_size``).
        header_timeout: a request's headers must be complete this long after
            its first byte (or after connecting); slow trickles are cut off.
        keepalive_timeout: an idle keep-alive connection is closed after this.
        http_response_timeout: a request handed to a consumer (including a
            long-poll parked in a group) that gets no ``http.response`` in this
            time is answered ``504 Gateway Timeout``.
        websocket_connect_timeout: a ``websocket.connect`` not accepted or
            rejected in this time is rejected with 403.
        websocket_max_message_size: larger messages close with 1009.
            ``None`` (default): derived from the channel layer - its
            ``max_message_size`` minus the connection's message envelope
            (reply channel, path, order), so every message accepted can be
            delivered. An explicit value above that is an error at start.
        websocket_ping_interval: ping an idle WebSocket this often (0: never).
        websocket_ping_timeout: close (1011) if no pong arrives in this time.
        websocket_close_timeout: after sending a close frame, wait this long
            for the client's reply before dropping the socket.
        max_outbound_buffer: unsent bytes allowed per connection; a client
            that reads slower than we write is disconnected beyond this.
        allowed_origins: WebSocket ``Origin`` host patterns (Django
            ``ALLOWED_HOSTS`` syntax); ``None`` means use ``ALLOWED_HOSTS``.
        check_origin: reject WebSocket handshakes from other origins (403).
        access_log: log one line per request/handshake (logger
            ``chanlite.server.access``).
        shutdown_timeout: on SIGTERM, wait this long for in-flight HTTP.
        backpressure_timeout: a connection whose channel (``websocket.receive``,
            ``websocket.connect``, ``http.request``, a body channel) is full is
            not read until there is room; after this long it gets 1013
            (WebSocket) or 503 with ``Retry-After`` (HTTP).
        backlog: listen() backlog.
        root_path: ``root_path`` / ``SCRIPT_NAME`` when mounted under a prefix.
        proxy_headers: trust ``X-Forwarded-For`` / ``-Port`` / ``-Proto`` and
            ``Daphne-Root-Path`` / ``X-Script-Name`` from ``trusted_proxies``
            (the client address, scheme and root path the app sees).
        trusted_proxies: peer addresses or networks whose proxy headers are
            trusted (``"*"``: any; a Unix-socket peer always is).
        check_origin_scheme_port: with the default origins (``ALLOWED_HOSTS``),
            the ``Origin``'s scheme and port must also be the request's own
            (its scheme, or ``X-Forwarded-Proto`` when trusted, and the port
            of its ``Host``). ``allowed_origins`` entries pin scheme and port
            by spelling them (``"https://app.example.com:8443"``).
        body_spool_threshold: a WSGI request body above this is written to a
            temporary file instead of memory (``wsgi.input`` reads the file).
        max_body_memory: request body bytes held in memory by all connections
            together; beyond it bodies spool to disk (WSGI) or are passed on
            to the layer at once (consumers).
        body_idle_timeout: a request body with no new byte for this long is
            answered 408 and closed.
        body_timeout: a request body not complete this long after its headers
            is answered 408 and closed.
        max_connections: open client connections; beyond it the server stops
            accepting (the kernel's listen backlog holds the rest). ``None``:
            10 000, or the open-file limit minus a margin if that is lower.
        max_queued_requests: WSGI requests waiting for a free thread; beyond
            it new ones get 503 with ``Retry-After``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    unix_socket: str | None = None
    threads: int = 8
    backlog: int = 1024
    root_path: str = ""
    max_header_size: int = 64 * 1024
    max_request_body: int = 10 * 1024 * 1024
    body_chunk_size: int = 256 * 1024
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    http_response_timeout: float = 60.0
    websocket_connect_timeout: float = 20.0
    websocket_max_message_size: int | None = None
    websocket_ping_interval: float = 20.0
    websocket_ping_timeout: float = 20.0
    websocket_close_timeout: float = 5.0
    max_outbound_buffer: int = 4 * 1024 * 1024
    allowed_origins: list[str] | None = None
    check_origin: bool = True
    access_log: bool = False
    shutdown_timeout: float = 30.0
    proxy_headers: bool = False
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    check_origin_scheme_port: bool = True
    body_spool_threshold: int = 512 * 1024
    max_body_memory: int = 64 * 1024 * 1024
    body_idle_timeout: float = 30.0
    body_timeout: float = 300.0
    max_connections: int | None = None
    max_queued_requests: int = 1000
    backpressure_timeout: float = 10.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and what to change."""
        for name in _SECONDS:
            value = getattr(self, name)
            if type(value) not in (int, float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        for name in _SIZES:
            value = getattr(self, name)
            if value is None and name == "websocket_max_message_size":
                continue  # derived from the channel layer
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
        if type(self.threads) is not int or self.threads < 1:
            raise ValueError(f"threads must be an int >= 1, not {self.threads!r}")
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an int in 0..65535, not {self.port!r}")
        if self.max_header_size < 1024:
            raise ValueError("max_header_size below 1024 bytes rejects ordinary browsers")
        if self.body_chunk_size > 4 * 1024 * 1024:
            raise ValueError(
                "body_chunk_size must stay below a channel layer's max_message_size "
                f"(use <= 4 MiB), not {self.body_chunk_size}"
            )
        for name in ("max_connections", "max_queued_requests"):
            value = getattr(self, name)
            if not (value is None and name == "max_connections") and (
                    type(value) is not int or value < 1):
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        for name in ("proxy_headers", "check_origin_scheme_port", "check_origin"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if not (isinstance(self.trusted_proxies, (list, tuple))
                and all(isinstance(p, str) for p in self.trusted_proxies)):
            raise ValueError(f"trusted_proxies must be a list of addresses or networks "
                             f"(or ['*']), not {self.trusted_proxies!r}")
        for entry in self.trusted_proxies:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or "
                                     "network (e.g. '10.0.0.0/8') or '*'") from None
        if self.allowed_origins is not None and not (
            isinstance(self.allowed_origins, (list, tuple))
            and all(isinstance(o, str) for o in self.allowed_origins)
        ):
            raise ValueError(
                f"allowed_origins must be None or a list of host patterns, "
                f"not {self.allowed_origins!r}"
            )

    def connection_limit(self) -> int:
        """``max_connections``, or its default: 10 000, or the soft open-file
        limit minus a margin (listeners, the layer, log files, spooled bodies)
        if that is lower, so accept() never meets EMFILE."""
        if self.max_connections is not None:
            return self.max_connections
        try:
            import resource  # noqa: PLC0415 — POSIX only: its ImportError is the non-POSIX branch

            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
            return 10_000
        if soft == resource.RLIM_INFINITY:
            return 10_000
        return max(1, min(10_000, soft - max(64, soft // 10)))

    @classmethod
    def from_settings(cls, **overrides: Any) -> ServerConfig:
        """Defaults < ``settings.CHANLITE_SERVER`` < ``overrides`` (None = unset)."""
        values: dict[str, Any] = {}
        if settings.configured:
            values.update(getattr(settings, "CHANLITE_SERVER", {}) or {})
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = {k: v for k, v in values.items() if k not in known}
        if unknown:
            raise ValueError(
                f"unknown CHANLITE_SERVER keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**values)
