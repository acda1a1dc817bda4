"""The origin check and the opaque ``Origin: null``.

Why its own test: a sandboxed iframe, a ``file://`` page or a redirect chain
sends ``Origin: null`` — a browser whose origin is hidden, not a non-browser
client. Treating it like a *missing* Origin (which means "not a browser,
nothing to protect") would let any such page open a WebSocket with the user's
cookies. It must be refused like a foreign origin.
"""

from __future__ import annotations

import pytest
import websocket

from .server_fixtures import ws_connect


def test_origin_null_is_refused_but_a_missing_origin_is_not(chanlite_server):
    server = chanlite_server()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, "/echo/", origin="null")
    assert info.value.status_code == 403, "Origin: null was accepted like a missing Origin"
    ws = ws_connect(server, "/echo/", suppress_origin=True)  # no Origin header at all
    ws.send("no origin")
    assert ws.recv() == "no origin"
    ws.close()


def test_origin_null_is_refused_even_when_every_host_is_allowed(chanlite_server):
    """``"*"`` allows every *host*; an opaque origin has none to allow."""
    server = chanlite_server(allowed_origins=["*"])
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, "/echo/", origin="null")
    assert info.value.status_code == 403
    ws = ws_connect(server, "/echo/", origin="http://anything.example")
    ws.send("any host")
    assert ws.recv() == "any host"
    ws.close()
