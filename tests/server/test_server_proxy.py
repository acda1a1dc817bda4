"""chanlite.server.proxy: pure functions, fed parsed request heads (no sockets)."""

from __future__ import annotations

import pytest

from chanlite.server.http import RequestHead
from chanlite.server.proxy import apply_proxy_headers, origin_matches, parse_origin


def head(*headers: tuple[bytes, bytes], scheme: str = "http") -> RequestHead:
    h = RequestHead("GET", b"/", "/", b"/", b"", "1.1", list(headers))
    h.scheme = scheme
    return h


def test_untrusted_peer_keeps_socket_values():
    h = head((b"x-forwarded-for", b"1.2.3.4"), (b"x-forwarded-proto", b"https"),
             (b"x-script-name", b"/p"))
    apply_proxy_headers(h, ["192.0.2.1", 5000], "http", "/root", True, ["10.0.0.0/8"])
    assert (h.client, h.scheme, h.root_path) == (["192.0.2.1", 5000], "http", "/root")
    assert (b"x-script-name", b"/p") in h.headers


def test_trusted_network_and_unix_socket_peers():
    h = head((b"x-forwarded-for", b" 1.2.3.4 ,5.6.7.8"), (b"x-forwarded-proto", b"HTTPS, http"))
    apply_proxy_headers(h, ["10.1.2.3", 5000], "http", "", True, ["10.0.0.0/8"])
    assert (h.client, h.scheme) == (["1.2.3.4", 0], "https")
    h = head((b"x-forwarded-for", b"::1"), (b"x-forwarded-proto", b"gopher"))
    apply_proxy_headers(h, None, "http", "", True, [])  # a Unix socket: the proxy is local
    assert (h.client, h.scheme) == (["::1", 0], "http")  # unknown scheme ignored


@pytest.mark.parametrize("origin, patterns, host, ok", [
    ("http://example.com", ["example.com"], b"example.com", True),
    ("http://example.com:81", ["example.com"], b"example.com", False),
    ("https://example.com", ["example.com"], b"example.com", False),
    ("http://a.example.com", [".example.com"], b"a.example.com", True),
    ("http://[::1]:8000", ["[::1]"], b"[::1]:8000", True),
    ("http://[::1]:8001", ["[::1]"], b"[::1]:8000", False),
    ("https://app.example.com", ["https://app.example.com"], b"api.example.com", True),
    ("https://x.example.com:8443", ["https://.example.com:8443"], b"api", True),
    ("https://x.example.com", ["https://.example.com:8443"], b"api", False),
    ("http://evil.com", ["*"], b"example.com", True),  # ALLOWED_HOSTS = ["*"]: any host
    ("http://evil.com:81", ["*"], b"example.com", False),  # ...but this site's port
])
def test_origin_matching(origin, patterns, host, ok):
    parsed = parse_origin(origin)
    assert parsed is not None
    assert origin_matches(parsed, patterns, head((b"host", host)), True) is ok


def test_host_only_when_scheme_port_check_is_off():
    parsed = parse_origin("https://example.com:9999")
    assert origin_matches(parsed, ["example.com"], head((b"host", b"example.com")), False)


@pytest.mark.parametrize("value", ["null", "example.com", "ftp://example.com", "http://"])
def test_opaque_or_unparsable_origins(value):
    assert parse_origin(value) is None
