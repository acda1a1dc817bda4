"""Issue 14 item 3: a handshake that cannot succeed is rejected at once.

No matching route, a consumer that raised, no worker taking
``websocket.connect``: each gets 403 now (not after the 20 s connect
timeout) and one log line naming the path and the reason; a timeout that
does happen says which of these it could be; the ``websocket.disconnect``
of an unrouted path is not logged a second time.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import websocket

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import Router, route
from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock
from chanlite.worker import Worker

from .server_consumers import noop, ws_accept, ws_silent
from .server_fixtures import WAIT, ws_connect

SLOW = 30  # a connect timeout no test may reach: rejections must come at once


def refused(server, path: str) -> tuple[int, float]:
    started = time.monotonic()
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        ws_connect(server, path)
    return info.value.status_code, time.monotonic() - started


def lines(caplog, level=logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def boom(message, **kwargs):
    raise RuntimeError("connect consumer bug")


routing = [
    route("websocket.connect", ws_accept, path=r"^/ok/$"),
    route("websocket.connect", boom, path=r"^/boom/$"),
    route("websocket.connect", ws_silent, path=r"^/silent/$"),
    route("websocket.disconnect", noop, path=r"^/(?:ok|boom|silent)/$"),
]


def test_no_matching_route_is_rejected_at_once_by_the_server(chanlite_server, caplog):
    caplog.set_level(logging.INFO)
    server = chanlite_server(routing=routing, websocket_connect_timeout=SLOW)
    status, took = refused(server, "/nope/")
    assert status == 403 and took < WAIT / 2
    assert any("/nope/" in line and "no route" in line for line in lines(caplog)), lines(caplog)
    # Decided before anything was sent: no connect, so no disconnect either.
    stats = server.layer.global_statistics()
    assert stats["messages_pending"] == 0


def test_routing_without_any_connect_route_means_no_worker_listens(chanlite_server, caplog):
    caplog.set_level(logging.INFO)
    server = chanlite_server(routing=[route("websocket.receive", noop)],
                             websocket_connect_timeout=SLOW)
    status, took = refused(server, "/chat/")
    assert status == 403 and took < WAIT / 2
    assert any("/chat/" in line and "no worker listens" in line for line in lines(caplog))


def test_a_connect_consumer_that_raised_is_rejected_at_once(chanlite_server, caplog):
    caplog.set_level(logging.INFO)
    server = chanlite_server(routing=routing, websocket_connect_timeout=SLOW)
    status, took = refused(server, "/boom/")
    assert status == 403 and took < WAIT / 2
    assert any("'/boom/'" in line and "consumer raised" in line for line in lines(caplog)), \
        lines(caplog)


def test_no_worker_taking_websocket_connect_is_rejected_at_once(chanlite_server, caplog):
    """The layer's statistics tell: the oldest ``websocket.connect`` has
    waited half the connect timeout, so nothing is taking them."""
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    layer = InMemoryChannelLayer(clock=clock)
    server = chanlite_server(workers=0, layer=layer, routing=routing,
                             websocket_connect_timeout=SLOW)
    layer.send("websocket.connect", {"stale": True})
    clock.advance(SLOW / 2 + 1)
    status, took = refused(server, "/ok/")
    assert status == 403 and took < WAIT / 2
    assert any("/ok/" in line and "no worker" in line and "1 handshake(s) waiting" in line
               for line in lines(caplog)), lines(caplog)


def test_worker_rejects_an_unrouted_connect_and_does_not_log_its_disconnect(
        chanlite_server, caplog):
    """A server that cannot see the routing (consumers in other processes)
    sends the connect; the worker that finds no route rejects it at once,
    and the ``websocket.disconnect`` that follows is not logged again."""
    caplog.set_level(logging.DEBUG)
    layer = InMemoryChannelLayer()
    server = chanlite_server(workers=0, layer=layer, routing=[], websocket_connect_timeout=SLOW)
    server.router = None  # as with consumers in runworker processes only
    worker = Worker(layer, Router(routing))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        status, took = refused(server, "/elsewhere/")
        assert status == 403 and took < WAIT / 2
        eventually(lambda: not layer.channel_statistics("websocket.disconnect")["messages_pending"]
                   and any("websocket.disconnect" in r.getMessage() for r in caplog.records),
                   "the worker to handle the disconnect", timeout=WAIT)
    finally:
        worker.stop()
        thread.join(WAIT)
    warnings = lines(caplog)
    assert [w for w in warnings if "'/elsewhere/'" in w] == [
        "no route matches a message on 'websocket.connect' (path '/elsewhere/'); add a "
        "route() for it or stop sending it (a worker rejects this WebSocket at once: 403)"
    ], warnings


def test_connect_timeout_says_no_worker_took_it(chanlite_server, caplog):
    caplog.set_level(logging.INFO)
    server = chanlite_server(workers=0, routing=routing, websocket_connect_timeout=0.5)
    server.layer.clock = FakeClock()  # the connect "ages" only as the test says
    clock = server.layer.clock
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", refused(server, "/ok/")))
    thread.start()
    eventually(lambda: server.layer.channel_statistics("websocket.connect")["messages_pending"],
               "the server to send websocket.connect", timeout=WAIT)
    clock.advance(0.5)
    thread.join(WAIT)
    assert result["r"][0] == 403
    [line] = [w for w in lines(caplog) if "not accepted within" in w]
    assert "/ok/" in line and "no worker took it" in line, line


def test_connect_timeout_says_the_consumer_did_not_answer(chanlite_server, caplog):
    caplog.set_level(logging.INFO)
    server = chanlite_server(routing=routing, websocket_connect_timeout=0.5)
    assert refused(server, "/silent/")[0] == 403
    [line] = [w for w in lines(caplog) if "not accepted within" in w]
    assert "/silent/" in line and "its consumer must reply" in line, line
