"""Live server helpers: the ``live_server_ws`` fixture and ChannelLiveServerTestCase,
with real sockets (websocket-client, http.client) against the sample app.

Every wait is bounded by the client socket timeout (WAIT seconds)."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
import websocket

from chanlite.layers import get_channel_layer
from chanlite.testing import ChannelLiveServerTestCase, LiveServer
from tests.toolkit.sample_app.routing import channel_routing

WAIT = 5.0


def ws_open(base: str, path: str, **options) -> websocket.WebSocket:
    return websocket.create_connection(base + path, timeout=WAIT, **options)


def http_get(base: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.chanlite_routes(channel_routing)
def test_live_server_ws_fixture_echo_json_chat_and_http(live_server_ws):
    assert live_server_ws.url.startswith("http://127.0.0.1:")
    assert live_server_ws.ws_url == live_server_ws.url.replace("http", "ws", 1)
    assert get_channel_layer("default") is live_server_ws.layer
    echo = ws_open(live_server_ws.ws_url, "/echo/")
    echo.send("over the wire")
    assert echo.recv() == "over the wire"
    echo.close()
    calc = ws_open(live_server_ws.ws_url, "/calc/")
    calc.send(json.dumps({"numbers": [1, 2]}))
    assert json.loads(calc.recv()) == {"sum": 3, "order": 1}
    calc.close()
    a, b = ws_open(live_server_ws.ws_url, "/chat/x/"), ws_open(live_server_ws.ws_url, "/chat/x/")
    a.send(json.dumps("hello"))
    assert json.loads(b.recv()) == {"room": "x", "said": "hello"}
    a.close()
    b.close()
    assert http_get(live_server_ws.url, "/chan/hello/?live") == (200, b"hello live")
    assert http_get(live_server_ws.url, "/hello/") == (200, b"Hello, world")  # a Django view


@pytest.mark.chanlite_routes(channel_routing)
def test_live_server_ws_cookie_auth_uses_the_test_database(live_server_ws):
    from django.contrib.auth.models import User

    from chanlite.testing import WSClient

    User.objects.create_user("liv", password="pw")
    client = WSClient()
    assert client.login(username="liv", password="pw")
    cookie = dict(client.headers)[b"cookie"].decode()
    ws = ws_open(live_server_ws.ws_url, "/whoami/", cookie=cookie)
    ws.send("hi")
    assert ws.recv() == "liv: hi"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws_open(live_server_ws.ws_url, "/whoami/")  # no cookie: anonymous, refused
    assert refused.value.status_code == 403


def test_live_server_stops_and_restores_the_layer():
    before = get_channel_layer("default")
    live = LiveServer(routing=channel_routing).start()
    try:
        assert get_channel_layer("default") is live.layer is not before
        port = live.port
    finally:
        assert live.stop(), "live server did not stop"
    assert get_channel_layer("default") is before
    with pytest.raises(OSError):
        websocket.create_connection(f"ws://127.0.0.1:{port}/echo/", timeout=WAIT)
    with pytest.raises(RuntimeError, match="not running"):
        live.url  # noqa: B018


class LiveCaseTests(ChannelLiveServerTestCase):
    live_server_routing = channel_routing

    def test_background_task_over_a_real_socket(self):
        ws = ws_open(self.live_server_ws_url, "/tasks/")
        ws.send(json.dumps({"square": 7}))
        replies = sorted(json.dumps(json.loads(ws.recv()), sort_keys=True) for _ in range(2))
        assert replies == ['{"queued": 7}', '{"result": 49}']
        ws.close()

    def test_http_view_and_consumer(self):
        assert http_get(self.live_server_url, "/hello/") == (200, b"Hello, world")
        assert http_get(self.live_server_url, "/chan/countdown/") == (200, b"3,2,1")
