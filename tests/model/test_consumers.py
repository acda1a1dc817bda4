"""Function and class consumers driven through the in-memory layer with dispatch()."""

from __future__ import annotations

import json

import pytest

from chanlite import Group
from chanlite.exceptions import RequestAborted, SendNotAvailableOnDemultiplexer
from chanlite.generic import (
    BaseConsumer,
    HttpConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
    WebsocketMultiplexer,
)
from chanlite.routing import Router, route, route_class
from chanlite.worker import dispatch


def replies(layer, prefix="r!"):
    out = []
    for _ in range(10_000):  # bounded: a consumer replying endlessly fails, not hangs
        channel, content = layer.receive([prefix])
        if channel is None:
            return out
        out.append(content)
    pytest.fail(f"more than 10000 replies on {prefix!r}: {out[:5]!r}...")


def ws(channel, order=0, reply="r!1", path="/ws/", **extra):
    return channel, {"reply_channel": reply, "path": path, "order": order, **extra}


def test_function_consumer_gets_filter_kwargs(layer):
    def connect(message, room):
        message.reply_channel.send({"text": room})

    router = Router([route("websocket.connect", connect, path=r"^/chat/(?P<room>\w+)/$")])
    dispatch(layer, router, *ws("websocket.connect", path="/chat/lobby/"))
    assert replies(layer) == [{"text": "lobby"}]


def test_base_consumer_method_mapping_and_fresh_instance_per_message(layer):
    instances = []

    class Tasks(BaseConsumer):
        method_mapping = {"thumbnails": "make", "cleanup": "clean"}

        def make(self, message, **kwargs):
            instances.append(self)
            self.seen = message["n"]

        def clean(self, message, **kwargs):
            instances.append(self)
            assert not hasattr(self, "seen")

    router = Router([route_class(Tasks)])
    assert router.channels == {"thumbnails", "cleanup"}
    dispatch(layer, router, "thumbnails", {"n": 1})
    dispatch(layer, router, "cleanup", {})
    assert len(instances) == 2 and instances[0] is not instances[1]


class Echo(WebsocketConsumer):
    def connection_groups(self, **kwargs):
        return ["echo-" + kwargs.get("room", "none")]

    def receive(self, text=None, bytes=None, **kwargs):
        self.send(text=text, bytes=bytes)


def test_websocket_consumer_lifecycle_and_groups(layer):
    router = Router([route_class(Echo, path=r"^/(?P<room>\w+)/$")])
    dispatch(layer, router, *ws("websocket.connect", path="/lobby/"))
    assert replies(layer) == [{"accept": True}]
    assert layer.group_channels("echo-lobby") == ["r!1"]
    dispatch(layer, router, *ws("websocket.receive", 1, path="/lobby/", text="hi"))
    dispatch(layer, router, *ws("websocket.receive", 2, path="/lobby/", bytes=b"\x00"))
    assert replies(layer) == [{"text": "hi"}, {"bytes": b"\x00"}]
    Echo.group_send("echo-lobby", text="all")
    assert replies(layer) == [{"text": "all"}]
    dispatch(layer, router, *ws("websocket.disconnect", 3, path="/lobby/", code=1000))
    assert layer.group_channels("echo-lobby") == []


def test_websocket_send_close_and_errors(layer):
    class C(WebsocketConsumer):
        def receive(self, text=None, bytes=None, **kwargs):
            if text == "both":
                self.send(text="a", bytes=b"b")
            elif text == "close":
                self.close(4000)
            else:
                self.send(text="bye", close=True)

    router = Router([route_class(C)])
    dispatch(layer, router, *ws("websocket.receive", 1, text="x"))
    dispatch(layer, router, *ws("websocket.receive", 2, text="close"))
    assert replies(layer) == [{"text": "bye", "close": True}, {"close": 4000}]
    with pytest.raises(ValueError, match="not both"):
        dispatch(layer, router, *ws("websocket.receive", 3, text="both"))


def test_json_consumer_and_custom_codec(layer):
    class J(JsonWebsocketConsumer):
        def receive(self, content, **kwargs):
            self.send({"got": content})

    class Upper(J):
        @classmethod
        def encode_json(cls, content):
            return json.dumps(content).upper()

    dispatch(layer, Router([route_class(J)]), *ws("websocket.receive", 1, text='{"a": 1}'))
    dispatch(layer, Router([route_class(Upper)]), *ws("websocket.receive", 1, text='"x"'))
    assert replies(layer) == [{"text": '{"got": {"a": 1}}'}, {"text": '{"GOT": "X"}'}]
    with pytest.raises(ValueError, match="binary frame"):
        dispatch(layer, Router([route_class(J)]), *ws("websocket.receive", 1, bytes=b"{}"))
    layer.group_add("jg", "r!2")
    J.group_send("jg", {"n": 1}, close=True)
    assert replies(layer) == [{"text": '{"n": 1}', "close": True}]


class Streamed(JsonWebsocketConsumer):
    def connect(self, message, multiplexer, **kwargs):
        multiplexer.send({"hello": multiplexer.stream})

    def receive(self, content, multiplexer, **kwargs):
        self.send({"echo": content})  # goes out on the stream, not raw


class Raw(WebsocketConsumer):
    def receive(self, text=None, bytes=None, **kwargs):
        self.send(text="raw")


class Demux(WebsocketDemultiplexer):
    consumers = {"a": Streamed, "raw": Raw}


def test_demultiplexer_routes_streams_and_replies_through_multiplexer(layer):
    router = Router([route_class(Demux)])
    dispatch(layer, router, *ws("websocket.connect"))
    assert replies(layer) == [{"accept": True},
                              {"text": json.dumps({"stream": "a", "payload": {"hello": "a"}})}]
    frame = json.dumps({"stream": "a", "payload": {"x": 1}})
    dispatch(layer, router, *ws("websocket.receive", 1, text=frame))
    assert replies(layer) == [{"text": json.dumps({"stream": "a", "payload": {"echo": {"x": 1}}})}]
    # 1.x monkeypatched Streamed.send; here the class is untouched
    assert "send" not in Streamed.__dict__
    with pytest.raises(SendNotAvailableOnDemultiplexer, match="multiplexer"):
        dispatch(
            layer,
            router,
            *ws("websocket.receive", 2, text=json.dumps({"stream": "raw", "payload": {}})),
        )
    with pytest.raises(ValueError, match="not one of"):
        dispatch(
            layer,
            router,
            *ws("websocket.receive", 3, text=json.dumps({"stream": "zz", "payload": {}})),
        )
    with pytest.raises(ValueError, match="invalid multiplexed frame"):
        dispatch(layer, router, *ws("websocket.receive", 4, text="[1]"))
    with pytest.raises(SendNotAvailableOnDemultiplexer):
        Demux.send(object(), text="x")


def test_multiplexer_group_send(layer):
    layer.group_add("g", "r!9")
    WebsocketMultiplexer.group_send("g", "s", {"k": 1}, close=True)
    Demux.group_send("g", "s", {"k": 2})
    assert replies(layer) == [
        {"text": json.dumps({"stream": "s", "payload": {"k": 1}}), "close": True},
        {"text": json.dumps({"stream": "s", "payload": {"k": 2}})},
    ]


def http(path="/poll/", reply="h!1", **extra):
    return "http.request", {"reply_channel": reply, "path": path, "method": "GET",
                            "headers": [], "query_string": b"", "body": b"", **extra}


def test_http_consumer_full_response(layer):
    class Hello(HttpConsumer):
        def handle(self, message, **kwargs):
            self.respond("héllo", headers=[("X-Test", "1")])

    dispatch(layer, Router([route_class(Hello, path=r"^/hello$")]), *http("/hello"))
    assert replies(layer, "h!") == [{
        "status": 200,
        "headers": [[b"x-test", b"1"], [b"content-type", b"text/plain; charset=utf-8"]],
        "content": "héllo".encode(), "more_content": False,
    }]


def test_http_consumer_long_poll_and_disconnect(layer):
    class Poll(HttpConsumer):
        groups = ["updates"]

        def handle(self, message, **kwargs):
            self.wait_for()

    router = Router([route_class(Poll)])
    dispatch(layer, router, *http(reply="h!1"))
    dispatch(layer, router, *http(reply="h!2"))
    assert replies(layer, "h!") == [], "long-poll answered before anything happened"
    dispatch(layer, router, "http.disconnect", {"reply_channel": "h!2", "path": "/poll/"})
    Poll.group_respond("updates", b'{"new": 1}', content_type="application/json")
    got = layer.receive(["h!"])
    assert got[0] == "h!1" and got[1]["content"] == b'{"new": 1}' and got[1]["status"] == 200
    assert layer.receive(["h!"]) == (None, None), "disconnected client still in the group"


def test_http_consumer_wait_for_without_group_is_an_error(layer):
    class Poll(HttpConsumer):
        def handle(self, message, **kwargs):
            self.wait_for()

    with pytest.raises(ValueError, match="got no group"):
        dispatch(layer, Router([route_class(Poll)]), *http())


def test_http_consumer_streaming_and_error_mid_stream(layer):
    class Stream(HttpConsumer):
        def handle(self, message, **kwargs):
            self.start_response(content_type="text/event-stream")
            self.send_chunk(b"data: 1\n\n")
            if message["path"] == "/fail":
                raise RuntimeError("mid-stream")
            self.finish(b"data: end\n\n")

    router = Router([route_class(Stream)])
    dispatch(layer, router, *http("/ok"))
    got = replies(layer, "h!")
    assert [m["more_content"] for m in got] == [True, True, False]
    assert got[0]["status"] == 200 and got[2] == {
        "content": b"data: end\n\n",
        "more_content": False,
    }
    with pytest.raises(RuntimeError):
        dispatch(layer, router, *http("/fail"))
    got = replies(layer, "h!")
    assert got[-1] == {"content": b"", "more_content": False}, "half-sent response left open"


def test_http_consumer_reads_body_channel(layer):
    class Upload(HttpConsumer):
        body_timeout = 5

        def handle(self, message, **kwargs):
            try:
                self.respond(self.read_body())
            except RequestAborted:
                self.respond(b"aborted", status=400)

    router = Router([route_class(Upload)])
    layer.send("body.1", {"content": b"b", "more_content": True})
    layer.send("body.1", {"content": b"c", "more_content": False})
    dispatch(layer, router, *http(body=b"a", body_channel="body.1"))
    layer.send("body.2", {"content": b"", "closed": True, "more_content": False})
    dispatch(layer, router, *http(body=b"a", body_channel="body.2"))
    assert [m["content"] for m in replies(layer, "h!")] == [b"abc", b"aborted"]


def test_group_class_is_reexported():
    from chanlite.channel import Group as G

    assert Group is G
