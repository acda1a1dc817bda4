"""Data binding with the pytest fixtures, ``run_until_idle``, and on every layer:
in-memory (the ``channel_layer`` fixture), IPC and Redis (each behind the real
server, with a real WebSocket client and the worker threads writing the
database).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest
import websocket
from django.contrib.auth.models import User

from chanlite.binding.websockets import WebsocketBinding
from chanlite.generic.websockets import WebsocketDemultiplexer
from chanlite.testing import run_until_idle

WAIT = 10.0


@pytest.fixture
def binding() -> Iterator[type[WebsocketBinding]]:
    """A User binding sending to group "users-live" and accepting any action,
    and a demultiplexer that puts each connection in that group."""

    class UserBinding(WebsocketBinding):
        model = User
        stream = "users"
        fields = ["username", "is_active"]

        @classmethod
        def group_names(cls, instance):
            return ["users-live"]

        def has_permission(self, user, action, pk):
            return True

    class Demultiplexer(WebsocketDemultiplexer):
        consumers = {"users": UserBinding.consumer}
        groups = ["users-live"]

    UserBinding.demultiplexer = Demultiplexer
    yield UserBinding
    UserBinding.unregister()


def frame(stream: str, payload: dict) -> dict:
    return {"stream": stream, "payload": payload}


# ------------------------------------------------------------ pytest fixtures


@pytest.mark.django_db
@pytest.mark.chanlite_layers("memory", "ipc")
def test_fixtures_and_run_until_idle(binding, channel_layer, routes, ws_client):
    """Frames sent without consuming, then run_until_idle: the inbound
    create runs, and its outbound message reaches the group member."""
    routes([binding.demultiplexer.as_route(path=r"^/users/$")])
    watcher = type(ws_client)()
    watcher.join_group("users-live")
    ws_client.send("websocket.connect", path="/users/")
    ws_client.send("websocket.receive", text=frame("users", {
        "action": "create", "data": {"username": "fixture"}}))
    assert run_until_idle() == 2
    assert User.objects.filter(username="fixture").exists()
    payload = watcher.receive()["payload"]
    assert (payload["action"], payload["data"]["username"]) == ("create", "fixture")
    assert ws_client.receive() == {"accept": True}
    assert ws_client.receive()["payload"]["action"] == "create"  # it is in the group too


@pytest.mark.django_db(transaction=True)
def test_rollback_sends_nothing_with_real_transactions(binding, channel_layer, ws_client):
    from django.db import transaction

    ws_client.join_group("users-live")
    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.create(username="ghost")
        raise RuntimeError("roll back")
    assert ws_client.receive() is None
    with transaction.atomic():
        User.objects.create(username="kept")
        assert ws_client.receive() is None  # not before the commit
    assert ws_client.receive()["payload"]["data"]["username"] == "kept"


# ----------------------------------------------------- real server, IPC and Redis


@pytest.fixture(params=["ipc", "redis"])
def live_layer(request):
    """A cross-process layer (real clock) for the live server."""
    if request.param == "ipc":
        from chanlite.testing.layers import ipc_test_layer, remove_ipc_test_layer

        layer = ipc_test_layer(clock=time.time)
        yield layer
        remove_ipc_test_layer(layer)
        return
    from chanlite.layers.redis import RedisChannelLayer

    from ..layers.redis_server import SHARED_URL, shared_redis_unavailable

    why = shared_redis_unavailable()
    if why:
        print(f"skipping the Redis binding test: {why}")
        pytest.skip(why)
    layer = RedisChannelLayer(hosts=[SHARED_URL], prefix=f"bindtest-{secrets.token_hex(4)}:")
    yield layer
    layer.flush()
    layer.close()


def recv_frame(ws: websocket.WebSocket) -> dict:
    ws.settimeout(WAIT)
    return json.loads(ws.recv())


@pytest.mark.django_db(transaction=True)
def test_binding_through_the_real_server(binding, live_layer):
    """Outbound from a save in this thread, inbound from a browser-like
    client run by the server's worker threads, on IPC and on Redis."""
    from chanlite.testing import LiveServer

    routing = [binding.demultiplexer.as_route(path=r"^/users/$")]
    with LiveServer(routing=routing, layer=live_layer, workers=2) as server:
        ws = websocket.create_connection(f"{server.ws_url}/users/", timeout=WAIT)
        try:
            user = User.objects.create(username="live")
            payload = recv_frame(ws)["payload"]
            assert (payload["action"], payload["pk"], payload["data"]["username"]) == (
                "create", user.pk, "live")

            ws.send(json.dumps(frame("users", {"action": "update", "pk": user.pk,
                                                "data": {"username": "renamed"}})))
            payload = recv_frame(ws)["payload"]
            assert (payload["action"], payload["data"]["username"]) == ("update", "renamed")
            user.refresh_from_db()
            assert user.username == "renamed"

            ws.send(json.dumps(frame("users", {"action": "delete", "pk": user.pk})))
            assert recv_frame(ws)["payload"]["action"] == "delete"
            assert not User.objects.filter(pk=user.pk).exists()
        finally:
            ws.close()
