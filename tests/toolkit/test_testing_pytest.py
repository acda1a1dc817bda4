"""The pytest side of chanlite.testing: fixtures, clients and run_until_idle,
driving the sample app's consumers (tests/toolkit/sample_app)."""

from __future__ import annotations

import pytest

from chanlite.channel import Channel, Group
from chanlite.layers import get_channel_layer
from chanlite.routing import route
from chanlite.testing import EndlessLoop, HttpClient, WSClient, run_until_idle
from tests.toolkit.sample_app.routing import channel_routing, echo_routing

pytestmark = pytest.mark.chanlite_routes(channel_routing)


# ------------------------------------------------------------ channel_layer


def test_channel_layer_is_installed_as_default_and_uses_the_clock(channel_layer, clock):
    assert get_channel_layer("default") is channel_layer
    assert channel_layer.clock is clock
    Channel("plain").send({"n": 1})  # no layer given: the alias's, i.e. the fixture's
    clock.advance(channel_layer.expiry + 1)
    assert channel_layer.receive(["plain"]) == (None, None), "expired message delivered"


def _leave_a_message_behind(channel_layer) -> None:
    """Both leak tests run this: whichever runs second (in any order, alone or
    not) proves the first one's leftover message did not reach it."""
    assert channel_layer.receive(["leak-check"]) == (None, None), "a previous test leaked"
    Channel("leak-check").send({"n": 1})
    assert channel_layer.channel_statistics("leak-check")["messages_pending"] == 1


def test_channel_layer_does_not_leak_between_tests_a(channel_layer):
    _leave_a_message_behind(channel_layer)


def test_channel_layer_does_not_leak_between_tests_b(channel_layer):
    _leave_a_message_behind(channel_layer)


# ----------------------------------------------------------------- routes


def test_routes_fixture_applies_for_one_test(routes, ws_client):
    seen = []
    routes([route("custom.channel", lambda message: seen.append(message["n"]))])
    ws_client.send_and_consume("custom.channel", {"n": 7})
    assert seen == [7]
    with pytest.raises(AssertionError, match="no route matches"):
        ws_client.send_and_consume("websocket.connect", path="/echo/")


def test_marker_routes_are_back_after_the_routes_fixture_test(ws_client):
    ws_client.connect("/echo/")  # the module's chanlite_routes marker, not custom.channel
    assert ws_client.receive() is None


# ---------------------------------------------------------------- clients


def test_ws_client_builds_spec_shaped_messages(ws_client, channel_layer):
    ws_client.set_header("origin", "http://testserver")
    ws_client.set_cookie("theme", "dark")
    ws_client.send("websocket.connect", path="/echo/?a=1&b=2")
    _, connect = channel_layer.receive(["websocket.connect"])
    assert connect["reply_channel"] == ws_client.reply_channel
    assert "!" in connect["reply_channel"] and not connect["reply_channel"].endswith("!")
    assert connect["path"] == "/echo/" and connect["query_string"] == b"a=1&b=2"
    assert connect["order"] == 0
    assert [b"origin", b"http://testserver"] in connect["headers"]
    assert [b"cookie", b"theme=dark"] in connect["headers"]
    assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in connect["headers"])
    assert connect["client"][0] == "127.0.0.1" and connect["server"] == ["testserver", 80]
    ws_client.send("websocket.receive", text={"x": 1})
    ws_client.send("websocket.receive", text="plain")
    ws_client.send("websocket.disconnect")
    received = [channel_layer.receive(["websocket.receive"])[1] for _ in range(2)]
    assert [m["order"] for m in received] == [1, 2]
    assert received[0]["text"] == '{"x": 1}' and received[1]["text"] == "plain"
    assert set(received[0]) == {"reply_channel", "path", "order", "text"}
    _, disconnect = channel_layer.receive(["websocket.disconnect"])
    assert (
        disconnect["order"] == 3 and disconnect["code"] == 1000 and disconnect["path"] == "/echo/"
    )


def test_echo_through_ws_client(ws_client):
    ws_client.connect("/echo/")
    ws_client.send_and_consume("websocket.receive", text="hello")
    assert ws_client.receive(json=False) == "hello"
    ws_client.send_and_consume("websocket.receive", {"bytes": b"\x00\x01"})
    assert ws_client.receive() == {"bytes": b"\x00\x01"}
    assert ws_client.receive() is None


def test_json_consumer_with_receive_json(ws_client):
    ws_client.connect("/calc/")
    ws_client.send_and_consume("websocket.receive", text={"numbers": [1, 2, 3.5]})
    assert ws_client.receive() == {"sum": 6.5, "order": 1}
    ws_client.send_and_consume("websocket.receive", text={"nope": 1})
    assert ws_client.receive(json=False) == '{"error": "expected {\'numbers\': [...]}"}'
    # close came with the frame: receive() gives the text, the raw message keeps close
    ws_client.send_and_consume("websocket.receive", text=[1])
    assert WSClient.__mro__[1].receive(ws_client)["close"] == 4000


def test_demultiplexed_streams(ws_client):
    ws_client.connect("/streams/")
    ws_client.send_and_consume("websocket.receive", text={"stream": "echo", "payload": {"a": 1}})
    ws_client.send_and_consume(
        "websocket.receive", text={"stream": "upper", "payload": {"text": "hi"}}
    )
    assert ws_client.receive() == {"stream": "echo", "payload": {"echo": {"a": 1}}}
    assert ws_client.receive() == {"stream": "upper", "payload": {"upper": "HI"}}
    with pytest.raises(ValueError, match="stream 'nope'"):
        ws_client.send_and_consume("websocket.receive", text={"stream": "nope", "payload": {}})


def test_check_accept_fails_when_the_consumer_rejects(routes, ws_client):
    routes([route("websocket.connect", lambda m: m.reply_channel.send({"close": True}))])
    with pytest.raises(AssertionError, match="rejected"):
        ws_client.connect("/")
    routes([route("websocket.connect", lambda m: None)])
    with pytest.raises(AssertionError, match="sent nothing"):
        ws_client.connect("/")
    ws_client.connect("/", check_accept=False)
    assert ws_client.receive() is None


def test_consume_fail_on_none(ws_client):
    with pytest.raises(AssertionError, match="no message on channel 'websocket.receive'"):
        ws_client.consume("websocket.receive")
    assert ws_client.consume("websocket.receive", fail_on_none=False) is None


def test_group_chat_with_two_clients(channel_layer):
    alice, bob = WSClient(), WSClient()
    alice.connect("/chat/lobby/")
    bob.connect("/chat/lobby/")
    alice.send_and_consume("websocket.receive", text={"hi": "bob"})
    assert alice.receive() == {"room": "lobby", "said": {"hi": "bob"}}
    assert bob.receive() == {"room": "lobby", "said": {"hi": "bob"}}
    bob.disconnect()
    alice.send_and_consume("websocket.receive", text=["bye"])
    assert alice.receive()["said"] == ["bye"]
    assert bob.receive() is None, "bob left the group but still got the message"


def test_join_group_listens_without_a_consumer(ws_client):
    ws_client.join_group("news")
    Group("news").send({"text": '{"headline": 1}'})
    assert ws_client.receive() == {"headline": 1}


def test_background_task_with_run_until_idle(ws_client, channel_layer):
    watcher = WSClient()
    watcher.join_group("sample-task-log")
    ws_client.connect("/tasks/")
    ws_client.send("websocket.receive", text={"square": 4})
    ws_client.send("websocket.receive", text={"square": 5})
    ran = run_until_idle(channel_layer)
    assert ran == 4, "2 frames + the 2 tasks they queued"
    replies = [ws_client.receive() for _ in range(4)]
    # FIFO per channel; the layer interleaves channels (fairly, reproducibly)
    assert [r for r in replies if "queued" in r] == [{"queued": 4}, {"queued": 5}]
    assert [r for r in replies if "result" in r] == [{"result": 16}, {"result": 25}]
    assert ws_client.receive() is None
    assert [watcher.receive() for _ in range(2)] == [{"done": 4}, {"done": 5}]
    assert run_until_idle(channel_layer) == 0


def test_background_task_step_by_step(ws_client):
    ws_client.connect("/tasks/")
    ws_client.send_and_consume("websocket.receive", text={"square": 3})
    assert ws_client.receive() == {"queued": 3}
    assert ws_client.receive() is None, "the task has not run yet"
    ws_client.consume("sample.tasks")
    assert ws_client.last_message["n"] == 3
    assert ws_client.receive() == {"result": 9}


def test_http_client_full_and_streamed_responses(http_client):
    response = http_client.get("/chan/hello/?ann")
    assert response.status == 200 and response.content == b"hello ann"
    assert response.header("Content-Type").startswith(b"text/plain")
    streamed = http_client.get("/chan/countdown/")
    assert streamed.content == b"3,2,1" and streamed.messages == 3


def test_http_client_without_a_response_fails_clearly(routes, http_client):
    routes([route("http.request", lambda m: None)])
    with pytest.raises(AssertionError, match="no http.response arrived"):
        http_client.get("/")
    assert http_client.get("/", require=False) is None


def test_http_client_is_also_a_ws_client():
    assert issubclass(HttpClient, WSClient)


def test_consumer_exception_reaches_the_test_and_discards_its_sends(routes, ws_client):
    def broken(message):
        message.reply_channel.send({"text": "never"})
        raise RuntimeError("consumer bug")

    routes([route("websocket.receive", broken)])
    with pytest.raises(RuntimeError, match="consumer bug"):
        ws_client.send_and_consume("websocket.receive", text="x")
    assert ws_client.receive() is None


# -------------------------------------------------------- run_until_idle


def test_run_until_idle_fails_loudly_on_an_endless_loop(routes, channel_layer):
    def forever(message):
        Channel("ping").send({"n": message["n"] + 1})

    routes([route("ping", forever)])
    Channel("ping").send({"n": 0})
    with pytest.raises(EndlessLoop, match="'ping'"):
        run_until_idle(channel_layer, max_messages=50)


def test_run_until_idle_with_explicit_routing_and_no_routes(channel_layer):
    assert run_until_idle(channel_layer, []) == 0
    Channel("sample.tasks").send({"n": 2, "notify": "test.reply.x!y"})
    assert run_until_idle(channel_layer, echo_routing) == 0, "echo routing ignores sample.tasks"
    assert run_until_idle(channel_layer, channel_routing) == 1


def _chat_transcript() -> list:
    """Three clients chatting with background tasks; returns who got what."""
    clients = [WSClient() for _ in range(3)]
    for client in clients:
        client.send("websocket.connect", path="/chat/room/")
    for n, client in enumerate(clients):
        client.send("websocket.receive", text={"m": n})
    tasks = WSClient()
    tasks.send("websocket.connect", path="/tasks/")
    for n in range(3):
        tasks.send("websocket.receive", text={"square": n})
    run_until_idle()
    return [[m.get("text") or m for m in c.receive_all()] for c in [*clients, tasks]]


def test_two_runs_give_the_same_message_order(routes):
    """Same test twice, each on a brand-new layer: identical deliveries."""
    from chanlite.layers import set_channel_layer
    from chanlite.testing.layers import make_test_layer

    runs = []
    for _ in range(2):
        previous = set_channel_layer("default", make_test_layer())
        try:
            runs.append(_chat_transcript())
        finally:
            set_channel_layer("default", previous)
    assert runs[0] == runs[1]
    assert len(runs[0][3]) == 7, runs[0][3]  # accept + 3 queued + 3 results


@pytest.mark.chanlite_layers("memory", "ipc")
def test_echo_on_every_layer_kind(channel_layer, ws_client):
    ws_client.connect("/echo/")
    ws_client.send_and_consume("websocket.receive", text="both")
    assert ws_client.receive(json=False) == "both"


# ----------------------------------------------------- cookie authentication


@pytest.mark.django_db
def test_cookie_authenticated_consumer(ws_client):
    from django.contrib.auth.models import User

    User.objects.create_user("ann", password="pw")
    assert not ws_client.login(username="ann", password="wrong")
    ws_client.connect("/whoami/", check_accept=False)
    assert ws_client.receive() == {"close": True}, "anonymous users are refused"
    assert ws_client.login(username="ann", password="pw")
    ws_client.connect("/whoami/")
    assert ws_client.channel_session["greeted"] == "ann"
    ws_client.send_and_consume("websocket.receive", text="hi")
    assert ws_client.receive(json=False) == "ann: hi"


@pytest.mark.django_db
def test_force_login_and_logout(ws_client):
    from django.contrib.auth.models import User

    bob = User.objects.create_user("bob")
    ws_client.force_login(bob)
    ws_client.connect("/whoami/")
    ws_client.send_and_consume("websocket.receive", text="x")
    assert ws_client.receive(json=False) == "bob: x"
    ws_client.logout()
    assert ws_client.get_cookies() == {}
    assert [name for name, _ in ws_client.headers] == [b"host"]


# ------------------------------------------------- order fields in practice


@pytest.mark.django_db
def test_out_of_order_frames_run_in_order_with_enforce_ordering(routes, ws_client):
    """The client's order numbers are what enforce_ordering needs; frames
    sent out of order are parked and run in order by run_until_idle."""
    from chanlite.generic import WebsocketConsumer

    class Strict(WebsocketConsumer):
        strict_ordering = True

        def receive(self, text=None, bytes=None, **kwargs):
            self.send(text=f"{self.message['order']}:{text}")

    routes([Strict.as_route()])
    ws_client.connect("/")
    ws_client.send("websocket.receive", {"order": 2}, text="second")
    ws_client.send("websocket.receive", {"order": 1}, text="first")
    run_until_idle()
    assert [ws_client.receive(json=False) for _ in range(2)] == ["1:first", "2:second"]


def test_group_membership_expires_with_the_fake_clock(channel_layer, clock, ws_client):
    ws_client.join_group("short")
    clock.advance(channel_layer.group_expiry + 1)
    Group("short").send({"text": "{}"})
    assert ws_client.receive() is None, "an expired member still got the group message"


def test_http_long_poll_answered_later(routes, http_client):
    """The docs' long-poll example: parked request, answered by group_respond."""
    from chanlite.generic import HttpConsumer

    class Updates(HttpConsumer):
        def handle(self, message, **kwargs):
            self.wait_for("updates")

    routes([Updates.as_route(path=r"^/updates/$")])
    assert http_client.get("/updates/", require=False) is None
    Updates.group_respond("updates", b'{"new": 1}', content_type="application/json")
    response = http_client.receive_response()
    assert response.json() == {"new": 1}
    assert response.header("content-type") == b"application/json"
