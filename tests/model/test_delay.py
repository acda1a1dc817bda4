"""``chanlite.delay``: the asgi.delay format, the service on the fake clock, and the
testing toolkit driving it (run_until_idle, clients, ChannelTestCase, fixtures).

The same service on the IPC and Redis layers, and its database store across
restarts, are in test_delay_layers.py; ``rundelay`` as a real process in
test_rundelay.py.
"""

from __future__ import annotations

import json
import logging

import pytest

from chanlite import Channel
from chanlite.delay import (
    DELAY_CHANNEL,
    MAX_DELAY_MS,
    DelayedMessage,
    InvalidDelayRequest,
    parse_request,
)
from chanlite.delay.embedded import embedded_delay, start_embedded_delay
from chanlite.delay.service import DelayService
from chanlite.generic import JsonWebsocketConsumer
from chanlite.routing import route, route_class
from chanlite.testing import ChannelTestCase, FakeClock, delay_service, run_until_idle

# ------------------------------------------------------------------ the format


def test_parse_request_accepts_the_1x_format():
    parsed = parse_request({"channel": "chat.expire", "content": {"id": 7}, "delay": 5000})
    assert (parsed.channel, parsed.content, parsed.delay_ms) == ("chat.expire", {"id": 7}, 5000)
    # process-specific channels (a reply channel) are valid targets; extra keys are ignored
    assert parse_request({"channel": "a.b!c", "content": {}, "delay": 0, "x": 1}).channel == "a.b!c"


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"content": {}, "delay": 1}, "missing key(s) 'channel'"),
        ({"channel": "a", "delay": 1}, "missing key(s) 'content'"),
        ({"channel": "a", "content": {}}, "missing key(s) 'delay'"),
        ({"channel": "bad name", "content": {}, "delay": 1}, "invalid channel name"),
        ({"channel": "a!", "content": {}, "delay": 1}, "is a pattern"),
        ({"channel": 5, "content": {}, "delay": 1}, "must be a str"),
        ({"channel": "a", "content": [1], "delay": 1}, "'content' must be a dict"),
        ({"channel": "a", "content": {}, "delay": "5"}, "number of milliseconds"),
        ({"channel": "a", "content": {}, "delay": True}, "number of milliseconds"),
        ({"channel": "a", "content": {}, "delay": float("nan")}, "number of milliseconds"),
        ({"channel": "a", "content": {}, "delay": -1}, "negative"),
        ({"channel": "a", "content": {}, "delay": MAX_DELAY_MS + 1}, "30-day limit"),
        ([1, 2], "is a dict"),
    ],
)
def test_parse_request_refuses_bad_requests_saying_why(request_, error):
    with pytest.raises(InvalidDelayRequest, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_request(request_)


def test_delayed_message_builds_and_sends_the_1x_message(channel_layer):
    message = DelayedMessage("chat.expire", {"id": 7}, delay=5000)
    assert message.as_message() == {"channel": "chat.expire", "content": {"id": 7}, "delay": 5000}
    message.send()
    assert channel_layer.receive([DELAY_CHANNEL]) == (DELAY_CHANNEL, message.as_message())
    with pytest.raises(InvalidDelayRequest, match="negative"):
        DelayedMessage("chat.expire", {}, delay=-1)


# ------------------------------------------------- run_until_idle on the fake clock


def _recorder(seen: list, name: str = "reminder"):
    return route(name, lambda message: seen.append(dict(message.content)))


def test_clock_advance_then_run_until_idle_delivers_what_became_due(channel_layer, clock, routes):
    seen: list = []
    routes([_recorder(seen)])
    Channel(DELAY_CHANNEL).send({"channel": "reminder", "content": {"n": 1}, "delay": 5000})
    Channel(DELAY_CHANNEL).send({"channel": "reminder", "content": {"n": 2}, "delay": 2000})
    assert run_until_idle() == 0 and seen == []
    assert delay_service(channel_layer).pending == 2
    clock.advance(1.999)
    assert run_until_idle() == 0 and seen == []
    clock.advance(0.001)
    assert run_until_idle() == 1 and seen == [{"n": 2}]
    clock.advance(10)
    assert run_until_idle() == 1 and seen == [{"n": 2}, {"n": 1}]
    clock.advance(100)
    assert run_until_idle() == 0 and seen == [{"n": 2}, {"n": 1}], "delivered twice"


def test_due_time_counts_from_the_send_not_from_run_until_idle(channel_layer, clock, routes):
    """A request that waited in asgi.delay is not delayed a second time."""
    seen: list = []
    routes([_recorder(seen)])
    DelayedMessage("reminder", {"n": 1}, delay=5000).send()
    clock.advance(5)  # nothing ran the delay service meanwhile
    assert run_until_idle() == 1 and seen == [{"n": 1}]


def test_delay_zero_and_chains_run_in_one_call(channel_layer, clock, routes):
    seen: list = []

    def again(message):
        seen.append(message["n"])
        if message["n"] < 3:
            DelayedMessage("again", {"n": message["n"] + 1}, delay=0).send()

    routes([route("again", again)])
    DelayedMessage("again", {"n": 1}, delay=0).send()
    assert run_until_idle() == 3 and seen == [1, 2, 3]


def test_delivers_to_unrouted_channels_too(channel_layer, clock, routes):
    routes([])
    DelayedMessage("somebody.else", {"n": 1}, delay=1000).send()
    run_until_idle()
    clock.advance(1)
    run_until_idle()
    assert channel_layer.receive(["somebody.else"]) == ("somebody.else", {"n": 1})


def test_delays_false_leaves_asgi_delay_alone(channel_layer, clock, routes):
    seen: list = []
    routes([_recorder(seen)])
    DelayedMessage("reminder", {"n": 1}, delay=0).send()
    assert run_until_idle(delays=False) == 0
    assert channel_layer.receive([DELAY_CHANNEL])[0] == DELAY_CHANNEL


def test_invalid_requests_are_logged_and_dropped_and_the_rest_still_served(
        channel_layer, clock, routes, caplog):
    seen: list = []
    routes([_recorder(seen)])
    layer = channel_layer
    for bad in ({"content": {}, "delay": 1}, {"channel": "reminder", "content": {}, "delay": -5},
                {"channel": "no spaces", "content": {}, "delay": 1},
                {"channel": "reminder", "content": {}, "delay": 10**15}):
        layer.send(DELAY_CHANNEL, {**bad})
    layer.send(DELAY_CHANNEL, {"channel": "reminder", "content": {"ok": True}, "delay": 0})
    with caplog.at_level(logging.WARNING, logger="chanlite.delay"):
        assert run_until_idle() == 1
    assert seen == [{"ok": True}]
    dropped = [r.getMessage() for r in caplog.records if "dropped an invalid" in r.getMessage()]
    assert len(dropped) == 4, dropped
    assert any("'channel'" in line for line in dropped)
    assert any("negative" in line for line in dropped)
    assert delay_service(layer).refused == 4


def test_full_target_channel_is_retried_not_dropped(clock):
    from chanlite.testing import make_test_layer

    layer = make_test_layer(clock=clock, capacity=1)
    service = DelayService(layer)
    layer.send("busy", {"first": True})
    assert service.accept({"channel": "busy", "content": {"second": True}, "delay": 0})
    assert service.deliver_due() == 0 and service.pending == 1  # full: kept
    assert layer.receive(["busy"]) == ("busy", {"first": True})
    assert service.deliver_due() == 0, "retried before retry_delay"
    clock.advance(service.retry_delay)
    assert service.deliver_due() == 1
    assert layer.receive(["busy"]) == ("busy", {"second": True})


def test_bytes_and_types_survive_the_delay(channel_layer, clock):
    content = {"b": b"\x00\xff", "s": "x", "n": [1, 2.5, None, True], "d": {"k": "v"}}
    DelayedMessage("raw", content, delay=10).send()
    run_until_idle()
    clock.advance(0.01)
    run_until_idle()
    assert channel_layer.receive(["raw"]) == ("raw", content)


# ---------------------------------------- consumers, clients, layers of the fixture


class Reminding(JsonWebsocketConsumer):
    """Replies "set" at once and "ring" after the asked number of seconds."""

    def receive(self, content, **kwargs):
        DelayedMessage("reminder.ring", {"reply_channel": self.message.reply_channel.name,
                                         "text": content["text"]},
                       delay=content["seconds"] * 1000).send()
        self.send({"set": content["text"]})


def ring(message):
    Channel(message["reply_channel"]).send({"text": json.dumps({"ring": message["text"]})})


REMINDER_ROUTES = [route_class(Reminding, path=r"^/remind/$"), route("reminder.ring", ring)]


@pytest.mark.chanlite_layers("memory", "ipc")
@pytest.mark.chanlite_routes(REMINDER_ROUTES)
def test_a_consumer_schedules_and_the_client_gets_it_later(ws_client, clock):
    ws_client.connect("/remind/")
    ws_client.send_and_consume("websocket.receive", path="/remind/",
                               text={"text": "tea", "seconds": 3})
    assert ws_client.receive() == {"set": "tea"}
    clock.advance(2.5)
    ws_client.run_until_idle()
    assert ws_client.receive() is None, "rang early"
    clock.advance(0.5)
    ws_client.run_until_idle()
    assert ws_client.receive() == {"ring": "tea"}
    assert ws_client.receive() is None


def test_a_failing_consumer_schedules_nothing(channel_layer, clock, routes):
    def fails(message):
        DelayedMessage("reminder", {"n": 1}, delay=0).send()
        raise RuntimeError("boom")

    routes([route("start", fails)])
    Channel("start").send({})
    with pytest.raises(RuntimeError):
        run_until_idle()
    assert channel_layer.receive([DELAY_CHANNEL]) == (None, None)


class DelayInChannelTestCase(ChannelTestCase):
    def test_delayed_message_with_the_test_case_clock(self):
        seen: list = []
        from chanlite.testing import apply_routes

        with apply_routes([route("reminder", lambda m: seen.append(m["n"]))]):
            DelayedMessage("reminder", {"n": 1}, delay=60_000).send()
            self.run_until_idle()
            self.clock.advance(59)
            self.run_until_idle()
            self.assertEqual(seen, [])
            self.clock.advance(1)
            self.run_until_idle()
            self.assertEqual(seen, [1])


# ------------------------------------------------------------ the embedded thread


def test_embedded_delay_runs_only_for_the_in_memory_layer_with_workers(make_ipc_layer):
    from chanlite.layers.memory import InMemoryChannelLayer

    memory = InMemoryChannelLayer()
    assert start_embedded_delay(memory, workers=0) is None
    assert start_embedded_delay(memory, workers=2, enabled=False) is None  # --nodelay
    assert start_embedded_delay(make_ipc_layer(), workers=2) is None  # rundelay's job
    thread = start_embedded_delay(memory, workers=2)
    try:
        assert thread is not None and thread.thread.is_alive()
    finally:
        assert thread.stop(5), "the delay thread did not stop"


def test_embedded_delay_thread_delivers_without_being_stepped():
    """The real loop: a blocking receive woken by the request, timed by the due time."""
    from chanlite.layers.memory import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    with embedded_delay(layer, workers=1) as thread:
        assert thread is not None
        layer.send(DELAY_CHANNEL, {"channel": "later", "content": {"n": 1}, "delay": 50})
        got = layer.receive(["later"], block=True, timeout=10)
        assert got == ("later", {"n": 1}), "the delay thread did not deliver within 10s"
        assert thread.service.sent == 1
    assert not thread.thread.is_alive()


def test_fake_clock_service_is_per_layer():
    from chanlite.testing import make_test_layer

    one, two = make_test_layer(clock=FakeClock()), make_test_layer(clock=FakeClock())
    assert delay_service(one) is delay_service(one)
    assert delay_service(one) is not delay_service(two)
    assert delay_service(one).clock is one.clock


@pytest.fixture
def make_ipc_layer():
    from chanlite.testing.layers import ipc_test_layer, remove_ipc_test_layer

    made = []

    def make():
        made.append(ipc_test_layer())
        return made[-1]

    yield make
    for layer in made:
        remove_ipc_test_layer(layer)


@pytest.mark.chanlite_routes(REMINDER_ROUTES)
def test_live_server_runs_the_delay_service(live_server_ws):
    import websocket

    ws = websocket.create_connection(live_server_ws.ws_url + "/remind/", timeout=20)
    try:
        ws.send(json.dumps({"text": "tea", "seconds": 0.05}))
        assert json.loads(ws.recv()) == {"set": "tea"}
        assert json.loads(ws.recv()) == {"ring": "tea"}, "the live server's delay thread"
    finally:
        ws.close()
