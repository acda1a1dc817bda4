"""Issue 13 item 6: HTTP framing and the WebSocket handshake, from raw bytes."""

from __future__ import annotations

import base64
import os

import pytest

from . import rawclient as raw


@pytest.fixture
def server(chanlite_server):
    return chanlite_server()


def test_content_length_with_transfer_encoding_is_refused_and_closed(server):
    # A classic smuggling probe: a proxy framing by Content-Length would see
    # one request, we (framing by chunked) would see a second one, "GET /smuggled".
    smuggle = (b"POST /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with raw.connect(server) as sock:
        sock.sendall(smuggle)
        everything = raw.read_until_closed(sock)
    assert raw.status_of(everything) == 400
    assert everything.count(b"HTTP/1.1 ") == 1, everything  # nothing answered after it
    assert b"connection: close" in everything.lower()


def test_http10_websocket_upgrade_is_refused(server):
    response = raw.request(server, raw.ws_handshake("/echo/", version="1.0"))
    assert raw.status_of(response) == 400
    assert b"HTTP/1.1" in raw.body_of(response)


@pytest.mark.parametrize("key", [
    "A" * 24,                                            # 24 chars, but 18 bytes
    base64.b64encode(os.urandom(15)).decode() + "====",  # 15 bytes
    "!" * 22 + "==",                                     # not base64 at all
])
def test_websocket_key_must_be_16_bytes_of_base64(server, key):
    assert len(key) == 24
    response = raw.request(server, raw.ws_handshake("/echo/", key=key))
    assert raw.status_of(response) == 400
    assert b"Sec-WebSocket-Key" in raw.body_of(response)


def test_a_good_handshake_still_gets_101_with_its_reason_phrase(server):
    response = raw.request(server, raw.ws_handshake("/echo/"))
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), response


def test_origin_check_compares_scheme_and_port(server):
    port = server.address[1]
    host = f"127.0.0.1:{port}"
    ok = raw.request(server, raw.ws_handshake(
        "/echo/", {"Origin": f"http://127.0.0.1:{port}"}, host=host))
    assert raw.status_of(ok) == 101
    for origin in (f"http://127.0.0.1:{port + 1}",   # another port on the same host
                   f"https://127.0.0.1:{port}",      # another scheme
                   "http://127.0.0.1"):              # port 80
        refused = raw.request(server, raw.ws_handshake("/echo/", {"Origin": origin}, host=host))
        assert raw.status_of(refused) == 403, origin


def test_origin_check_of_host_only_can_be_configured(chanlite_server):
    server = chanlite_server(check_origin_scheme_port=False)
    response = raw.request(server, raw.ws_handshake(
        "/echo/", {"Origin": f"https://127.0.0.1:{server.address[1] + 1}"}))
    assert raw.status_of(response) == 101
    pinned = chanlite_server(allowed_origins=["https://app.example.com"])
    assert raw.status_of(raw.request(pinned, raw.ws_handshake(
        "/echo/", {"Origin": "https://app.example.com"}))) == 101
    assert raw.status_of(raw.request(pinned, raw.ws_handshake(
        "/echo/", {"Origin": "http://app.example.com"}))) == 403
    assert raw.status_of(raw.request(pinned, raw.ws_handshake(
        "/echo/", {"Origin": "https://app.example.com:8443"}))) == 403


def test_400_does_not_echo_the_parser_text(server):
    probe = b"GET /hello/ HTTP/1.1\r\nHost: 127.0.0.1\r\n<script>alert(1)</script>\r\n\r\n"
    response = raw.request(server, probe)
    assert raw.status_of(response) == 400
    body = raw.body_of(response)
    assert b"script" not in body and b"bytearray" not in body, body
    assert body == b"400 Bad Request\nmalformed request\n"
