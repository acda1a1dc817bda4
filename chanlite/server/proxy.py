"""Who really sent a request: proxy headers, root path, and the origin check.

Pure functions over a parsed :class:`~chanlite.server.http.RequestHead`, so
they are tested without sockets. Behind a reverse proxy the TCP peer is the
proxy, and the browser's address, scheme (TLS ends at the proxy) and mount
prefix arrive as headers; Daphne 1.x read them with ``--proxy-headers``.
They are trusted only when ``proxy_headers`` is on *and* the peer is one of
``trusted_proxies`` - otherwise any client could claim any address.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .http import RequestHead

__all__ = ["apply_proxy_headers", "Origin", "parse_origin", "origin_matches", "ROOT_PATH_HEADERS"]

log = logging.getLogger("chanlite.server")

#: Headers that set ``root_path`` for one request (``Daphne-Root-Path`` as in
#: Daphne 1.x; ``X-Script-Name`` as many proxies configure it).
ROOT_PATH_HEADERS = (b"daphne-root-path", b"x-script-name")
_SCHEMES = {"http", "https", "ws", "wss"}
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_warned_untrusted: set[str] = set()


def _first(value: bytes) -> str:
    return value.decode("latin-1").split(",")[0].strip()


def _peer_trusted(client: list[Any] | None, trusted: list[str]) -> bool:
    if client is None:
        return True  # a Unix socket: the proxy is on this host, by permission
    if "*" in trusted:
        return True
    try:
        peer = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    for entry in trusted:
        try:
            if peer in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def apply_proxy_headers(head: RequestHead, client: list[Any] | None, scheme: str, root_path: str,
                        enabled: bool, trusted: list[str]) -> None:
    """Fill ``head.client`` / ``head.scheme`` / ``head.root_path`` for this request.

    Without trusted proxy headers they are the socket's peer, the server's own
    scheme and the configured ``root_path``. With them: ``X-Forwarded-For``'s
    first address (port from ``X-Forwarded-Port``, 0 when absent, a
    non-integer ignored), ``X-Forwarded-Proto``'s first value, and the root
    path from ``Daphne-Root-Path`` / ``X-Script-Name``, which are removed from
    ``head.headers`` (they are instructions to us, not the app's business).
    """
    head.client = client
    head.scheme = scheme
    head.root_path = root_path
    if not enabled:
        return
    if not _peer_trusted(client, trusted):
        peer = str(client[0]) if client else "?"
        if peer not in _warned_untrusted and len(_warned_untrusted) < 100:
            _warned_untrusted.add(peer)
            log.warning("proxy headers from %s ignored: not in trusted_proxies %s", peer, trusted)
        return
    forwarded_for = head.header(b"x-forwarded-for")
    if forwarded_for is not None:
        address = _first(forwarded_for)
        if address:
            port = 0
            forwarded_port = head.header(b"x-forwarded-port")
            if forwarded_port is not None:
                try:
                    port = int(_first(forwarded_port))
                except ValueError:
                    pass
            head.client = [address, port]
    proto = head.header(b"x-forwarded-proto")
    if proto is not None:
        value = _first(proto).lower()
        if value in _SCHEMES:
            head.scheme = value
    for name in ROOT_PATH_HEADERS:
        root = head.header(name)
        if root is not None:
            head.root_path = unquote(root.decode("latin-1")).rstrip("/")
            break
    if any(name in ROOT_PATH_HEADERS for name, _ in head.headers):
        head.headers = [(k, v) for k, v in head.headers if k not in ROOT_PATH_HEADERS]


@dataclass(frozen=True, slots=True)
class Origin:
    """A parsed origin: scheme, host (lower-case, no brackets) and port."""

    scheme: str
    host: str
    port: int


def _port_for(scheme: str, port: int | None) -> int:
    return port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def parse_origin(value: str) -> Origin | None:
    """``"https://Example.com:8443"`` -> Origin; None if not a tuple origin."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower(), _port_for(scheme, port))


def _host_matches(host: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def _split_pattern(pattern: str) -> tuple[str | None, str, int | None]:
    """``"https://.example.com:8443"`` -> ``("https", ".example.com", 8443)``;
    a bare host pattern has no scheme; a scheme without a port gets its default."""
    scheme = None
    if "://" in pattern:
        scheme, pattern = pattern.split("://", 1)
        scheme = scheme.lower()
    pattern = pattern.rstrip("/")
    port = ""
    if pattern.startswith("["):  # [::1]:8000
        host, _, rest = pattern[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif pattern.count(":") == 1:
        host, port = pattern.split(":")
    else:
        host = pattern
    number = int(port) if port.isdigit() else None
    if scheme is not None and number is None:
        number = _DEFAULT_PORTS.get(scheme)
    return scheme, host.lower(), number


def _request_origin(head: RequestHead) -> Origin | None:
    """The origin the request itself was made to: its scheme and Host header."""
    host = head.header(b"host")
    if host is None:
        return None
    http_scheme = {"ws": "http", "wss": "https"}.get(head.scheme, head.scheme)
    return parse_origin(f"{http_scheme}://{host.decode('latin-1')}")


def origin_matches(origin: Origin, patterns: list[str], head: RequestHead,
                   check_scheme_port: bool) -> bool:
    """Whether ``origin`` is allowed.

    A pattern with a scheme (``"https://example.com"``, ``"https://.example.com:8443"``)
    must match scheme, host and port. A bare host pattern (``ALLOWED_HOSTS``
    syntax: ``"example.com"``, ``".example.com"``, ``"*"``) matches the host;
    with ``check_scheme_port`` the origin's scheme and port must then also be
    those the request was made to (its own scheme - ``X-Forwarded-Proto``
    when proxy headers are trusted - and the port of its ``Host`` header), so
    ``http://example.com:8080`` cannot open a socket on ``https://example.com``.
    """
    same = None
    for pattern in patterns:
        scheme, host_pattern, port = _split_pattern(pattern)
        if not _host_matches(origin.host, host_pattern):
            continue
        if scheme is not None:
            if origin.scheme == scheme and origin.port == port:
                return True
            continue
        if port is not None and origin.port != port:
            continue
        if not check_scheme_port:
            return True
        if same is None:
            same = _request_origin(head) or Origin("", "", -1)
        if origin.scheme == same.scheme and origin.port == same.port:
            return True
    return False
