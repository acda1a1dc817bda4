"""Server behaviour Daphne 1.x projects relied on (issue 11 item 7), over raw sockets."""

from __future__ import annotations

import json
import logging
import time

import pytest

from ..security import rawclient as raw
from .server_compat_app import channel_routing


@pytest.fixture
def start(chanlite_server, settings):
    settings.ROOT_URLCONF = "tests.server.server_compat_app"
    return lambda **config: chanlite_server(routing=channel_routing, **config)


PROXIED = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Forwarded-Port": "4431",
           "X-Forwarded-Proto": "https", "Daphne-Root-Path": "/app%20one"}


def consumer_info(server, headers: dict) -> dict:
    response = raw.get(server, "/compat/info/", headers)
    assert raw.status_of(response) == 200, response
    return json.loads(raw.body_of(response))


def ws_info(server, headers: dict) -> dict:
    with raw.connect(server) as sock:
        sock.sendall(raw.ws_handshake("/compat/info/", headers))
        assert raw.status_of(raw.read_head(sock)) == 101
        return json.loads(raw.ws_read_text(sock))


def test_proxy_headers_are_ignored_by_default(start):
    server = start()
    info = consumer_info(server, PROXIED)
    assert info["client"][0] == "127.0.0.1" and info["client"][1] != 4431
    assert info["scheme"] == "http" and info["root_path"] == ""
    assert "daphne-root-path" in info["headers"]  # not ours to interpret: the app sees it


def test_proxy_headers_set_client_scheme_and_root_path(start):
    server = start(proxy_headers=True)
    info = consumer_info(server, PROXIED)
    assert info["client"] == ["203.0.113.7", 4431]  # first address of the list
    assert info["scheme"] == "https"
    assert info["root_path"] == "/app one"
    assert "daphne-root-path" not in info["headers"]  # consumed by the server
    assert consumer_info(server, {"X-Forwarded-For": "203.0.113.8"})["client"] == [
        "203.0.113.8", 0]  # port 0 when absent
    assert consumer_info(server, {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Port": "x"}
                         )["client"] == ["203.0.113.9", 0]  # a non-integer port is ignored
    ws = ws_info(server, {**PROXIED, "X-Script-Name": "/ignored"})
    assert ws["client"] == ["203.0.113.7", 4431]
    assert ws["scheme"] == "wss" and ws["root_path"] == "/app one"


def test_proxy_headers_reach_views(start):
    server = start(proxy_headers=True)
    response = raw.get(server, "/environ/", {**PROXIED, "Daphne-Root-Path": "/mounted"})
    assert json.loads(raw.body_of(response)) == {
        "remote_addr": "203.0.113.7", "scheme": "https", "script_name": "/mounted"}


def test_proxy_headers_only_from_trusted_proxies(start):
    server = start(proxy_headers=True, trusted_proxies=["10.0.0.0/8"])
    info = consumer_info(server, PROXIED)
    assert info["client"][0] == "127.0.0.1" and info["scheme"] == "http"


def test_str_headers_are_encoded_latin1_with_reason_phrase(start):
    server = start()
    response = raw.get(server, "/compat/str-headers/")
    assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
    assert b"\r\nX-Greeting: caf\xe9\r\n" in response
    assert raw.body_of(response) == b"ok"


@pytest.mark.parametrize("code", [1000, 4000, 1006, 1])  # any int, even unsendable ones
def test_close_with_any_int_before_accept_rejects_at_once(start, code):
    server = start(websocket_connect_timeout=30)
    started = time.monotonic()
    response = raw.request(server, raw.ws_handshake(f"/compat/close/{code}/"))
    assert raw.status_of(response) == 403
    assert time.monotonic() - started < 3, "rejected only at the connect timeout"


def test_invalid_reply_before_accept_rejects_at_once_and_logs_the_path(start, caplog):
    caplog.set_level(logging.ERROR, logger="chanlite.server")
    server = start(websocket_connect_timeout=30)
    started = time.monotonic()
    response = raw.request(server, raw.ws_handshake("/compat/invalid/"))
    assert raw.status_of(response) == 403
    assert time.monotonic() - started < 3
    lines = [r.getMessage() for r in caplog.records if "/compat/invalid/" in r.getMessage()]
    assert lines and "acept" in lines[0], [r.getMessage() for r in caplog.records]


def test_http_disconnect_after_a_completed_keepalive_response(start):
    server = start()
    with raw.connect(server) as sock:
        for _ in range(2):  # two answered requests on one kept-alive connection
            sock.sendall(b"GET /compat/quick/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert raw.body_of(raw.read_response(sock)) == b"quick"
        got, _ = server.layer.receive(["test.http_disconnect"], block=True, timeout=0.2)
        assert got is None, "http.disconnect before the connection closed"
    seen = []
    deadline = time.monotonic() + raw.WAIT
    while len(seen) < 2 and time.monotonic() < deadline:
        channel, message = server.layer.receive(["test.http_disconnect"], block=True, timeout=0.2)
        if channel:
            seen.append(message)
    assert seen == [{"path": "/compat/quick/"}] * 2


def test_http_disconnect_when_a_kept_alive_connection_upgrades(start):
    server = start()
    with raw.connect(server) as sock:
        sock.sendall(b"GET /compat/quick/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert raw.body_of(raw.read_response(sock)) == b"quick"
        sock.sendall(raw.ws_handshake("/compat/info/"))
        assert raw.status_of(raw.read_head(sock)) == 101
        # The HTTP part of this connection is over, though the socket is open.
        channel, message = server.layer.receive(["test.http_disconnect"], block=True,
                                                timeout=raw.WAIT)
        assert message == {"path": "/compat/quick/"}
