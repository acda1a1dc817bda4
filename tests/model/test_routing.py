"""Routing: filters, include() prefix stripping, Router inputs and errors, get_router."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from chanlite.generic import WebsocketConsumer
from chanlite.routing import Router, get_router, include, reset_routers, route, route_class


def a(message, **kwargs):
    pass


def b(message, **kwargs):
    pass


def test_route_filters_and_named_groups():
    router = Router([
        route("websocket.connect", a, path=r"^/chat/(?P<room>[^/]+)/$"),
        route("websocket.connect", b),
    ])
    assert router.channels == {"websocket.connect"}
    assert router.match("websocket.connect", {"path": "/chat/lobby/"}) == (a, {"room": "lobby"})
    # falls through to the unfiltered route
    assert router.match("websocket.connect", {"path": "/other/"}) == (b, {})
    assert router.match("websocket.receive", {"path": "/chat/lobby/"}) is None


def test_filter_on_missing_field_does_not_match():
    router = Router([route("http.request", a, path=r"^/x$")])
    assert router.match("http.request", {}) is None
    assert router.match("http.request", {"path": "/x"}) == (a, {})


def test_filter_on_bytes_field():
    router = Router([route("http.request", a, query_string=r"^token=(?P<t>\w+)")])
    assert router.match("http.request", {"query_string": b"token=abc&x=1"}) == (a, {"t": "abc"})


def test_include_strips_matched_prefix_and_merges_kwargs():
    router = Router([
        include("tests.model.routing_fixtures.chat_routing", path=r"^/chat/(?P<site>\w+)"),
        include("tests.model.routing_fixtures.app_routing", path=r"^/app"),
    ])
    assert router.channels == {"websocket.receive", "websocket.connect"}
    consumer, kwargs = router.match("websocket.receive", {"path": "/chat/main/lobby/"})
    assert consumer.__name__ == "chat_message"
    assert kwargs == {"site": "main", "room": "lobby"}
    consumer, kwargs = router.match("websocket.connect", {"path": "/app/"})
    assert consumer.__name__ == "app_connect"
    assert router.match("websocket.connect", {"path": "/app/x"}) is None
    # the content seen by the caller is untouched
    content = {"path": "/chat/main/lobby/"}
    router.match("websocket.receive", content)
    assert content == {"path": "/chat/main/lobby/"}


def test_nested_include_and_list_include():
    inner = [route("x", a, path=r"^/leaf$")]
    router = Router([include([include(inner, path=r"^/mid")], path=r"^/top")])
    assert router.match("x", {"path": "/top/mid/leaf"}) == (a, {})
    assert router.match("x", {"path": "/top/leaf"}) is None


def test_route_class_uses_channel_names_and_as_route():
    class C(WebsocketConsumer):
        pass

    router = Router([route_class(C, path=r"^/ws/$"), C.as_route(path=r"^/other/$")])
    assert router.channels == {"websocket.connect", "websocket.receive", "websocket.disconnect"}
    assert router.match("websocket.receive", {"path": "/ws/"}) == (C, {})
    consumer, _ = router.match("websocket.receive", {"path": "/other/"})
    assert issubclass(consumer, C)


def test_as_route_attrs_makes_a_subclass():
    class C(WebsocketConsumer):
        groups = ["a"]

    entry = C.as_route(attrs={"groups": ["b"]}, path=r"^/$")
    router = Router([entry])
    consumer, _ = router.match("websocket.connect", {"path": "/"})
    assert consumer is not C and consumer.groups == ["b"] and C.groups == ["a"]


def test_router_accepts_dotted_path_and_dict_and_message():
    from chanlite.layers.memory import InMemoryChannelLayer
    from chanlite.message import Message

    assert Router("tests.model.routing_fixtures.app_routing").channels == {"websocket.connect"}
    router = Router({"thumbnails": a, "other": "tests.model.test_routing.b"})
    assert router.match("thumbnails", {}) == (a, {})
    assert router.match("other", {}) == (b, {})
    msg = Message({}, "thumbnails", InMemoryChannelLayer())
    assert router.match(msg) == (a, {})


@pytest.mark.parametrize(
    ("routing", "error"),
    [
        ([("websocket.connect", a)], "did you mean route"),
        ([WebsocketConsumer], "did you mean route_class"),
        ("tests.model.routing_fixtures.not_a_list", "must be a list"),
        ("tests.model.routing_fixtures.nope", "cannot import routing"),
        (42, "must be a list"),
    ],
)
def test_router_bad_entries_have_clear_errors(routing, error):
    with pytest.raises(ImproperlyConfigured, match=error):
        Router(routing)


def test_route_argument_errors():
    with pytest.raises(ValueError, match="positional groups"):
        route("x", a, path=r"^/chat/([^/]+)/$")
    with pytest.raises(ValueError, match="not callable"):
        route("x", 42)
    with pytest.raises(ValueError, match="not a valid regex"):
        route("x", a, path=r"^(")
    with pytest.raises(ValueError, match="process-specific"):
        route("reply!", a)
    with pytest.raises(ValueError, match="invalid channel name"):
        route("bad name", a)
    with pytest.raises(ValueError, match="channel_names"):
        route_class(a)
    with pytest.raises(ImproperlyConfigured, match="cannot import the consumer"):
        route("x", "tests.nowhere.consumer")


def test_get_router_from_settings_is_cached_and_resettable(settings):
    reset_routers()
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
                    "ROUTING": "tests.model.routing_fixtures.app_routing"},
        "bare": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer"},
        "bad": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
                "ROUTING": "tests.model.routing_fixtures.not_a_list"},
    }
    try:
        router = get_router()
        assert router.channels == {"websocket.connect"}
        assert get_router("default") is router
        with pytest.raises(ImproperlyConfigured, match="has no 'ROUTING'"):
            get_router("bare")
        with pytest.raises(ImproperlyConfigured, match="must be a list"):
            get_router("bad")
        with pytest.raises(ImproperlyConfigured, match="no channel layer 'missing'"):
            get_router("missing")
        reset_routers("default")
        assert get_router() is not router
    finally:
        reset_routers()


def test_set_router_swaps_and_restores(settings):
    from chanlite.routing import set_router

    reset_routers()
    mine = Router([route("x", a)])
    try:
        previous = set_router("default", mine)
        assert get_router() is mine
        assert set_router("default", previous) is mine
        assert get_router() is not mine
    finally:
        reset_routers()
