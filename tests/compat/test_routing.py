from __future__ import unicode_literals

from django.test import SimpleTestCase

from chanlite import route as top_level_route
from chanlite.generic import BaseConsumer
from chanlite.message import Message
from chanlite.routing import Router, include, route, route_class


# Fake consumers and routing sets that can be imported by string
def consumer_1():
    pass


def consumer_2():
    pass


def consumer_3():
    pass


chatroom_routing = [
    route("websocket.connect", consumer_2, path=r"^/chat/(?P<room>[^/]+)/$"),
    route("websocket.connect", consumer_3, path=r"^/mentions/$"),
]

# 1.x matched filters with re.match: a leading ^ was optional.
chatroom_routing_nocaret = [
    route("websocket.connect", consumer_2, path=r"/chat/(?P<room>[^/]+)/$"),
    route("websocket.connect", consumer_3, path=r"/mentions/$"),
]


class ClassConsumer(BaseConsumer):

    method_mapping = {
        "test.channel": "some_method",
    }

    def some_method(self, message, **kwargs):
        pass


class RoutingTests(SimpleTestCase):
    """
    Tests that the router's routing code works correctly.
    """

    def assertRoute(self, router, channel, content, consumer, kwargs=None):
        """
        Asserts that asking the `router` to route the `content` as a message
        from `channel` means it returns consumer `consumer`, optionally
        testing it also returns `kwargs` to be passed in

        Use `consumer` = None to assert that no route is found.
        """
        message = Message(content, channel, channel_layer="fake channel layer")
        match = router.match(message)
        if match is None:
            if consumer is None:
                return
            else:
                self.fail("No route found for %s on %s; expecting %s" % (
                    content,
                    channel,
                    consumer,
                ))
        else:
            mconsumer, mkwargs = match
            if consumer is None:
                self.fail("Route found for %s on %s; expecting no route." % (
                    content,
                    channel,
                ))
            self.assertEqual(consumer, mconsumer, "Route found for %s on %s; but wrong consumer (%s not %s)." % (
                content,
                channel,
                mconsumer,
                consumer,
            ))
            if kwargs is not None:
                self.assertEqual(kwargs, mkwargs, "Route found for %s on %s; but wrong kwargs (%s not %s)." % (
                    content,
                    channel,
                    mkwargs,
                    kwargs,
                ))

    def test_assumption(self):
        """
        Ensures the test consumers don't compare equal, as if this ever happens
        this test file will pass and miss most bugs.
        """
        self.assertNotEqual(consumer_1, consumer_2)
        self.assertNotEqual(consumer_1, consumer_3)

    def test_dict(self):
        """
        Tests dict expansion
        """
        router = Router({
            "http.request": consumer_1,
            "http.disconnect": consumer_2,
        })
        self.assertRoute(router, channel="http.request", content={}, consumer=consumer_1, kwargs={})
        self.assertRoute(router, channel="http.request", content={"path": "/chat/"}, consumer=consumer_1, kwargs={})
        self.assertRoute(router, channel="http.disconnect", content={}, consumer=consumer_2, kwargs={})

    def test_filters(self):
        """
        Tests that filters catch things correctly.
        """
        router = Router([
            route("http.request", consumer_1, path=r"^/chat/$"),
            route("http.disconnect", consumer_2),
            route("http.request", consumer_3),
        ])
        # Filter hit
        self.assertRoute(router, channel="http.request", content={"path": "/chat/"}, consumer=consumer_1, kwargs={})
        # Fall-through
        self.assertRoute(router, channel="http.request", content={}, consumer=consumer_3, kwargs={})
        self.assertRoute(router, channel="http.request", content={"path": "/liveblog/"}, consumer=consumer_3, kwargs={})

    def test_filters_without_caret(self):
        """
        Filters are matched from the start of the value, ^ or not.
        """
        router = Router([
            route("websocket.connect", consumer_1, path=r"/chat/"),
            route("websocket.connect", consumer_2, path=r"/other/$"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": "/chat/"}, consumer=consumer_1, kwargs={})
        self.assertRoute(router, channel="websocket.connect", content={"path": "/chat/lobby/"}, consumer=consumer_1)
        # Anchored at the start: a match further in does not count.
        self.assertRoute(router, channel="websocket.connect", content={"path": "/x/chat/"}, consumer=None)
        self.assertRoute(router, channel="websocket.connect", content={"path": "/x/other/"}, consumer=None)

    def test_include(self):
        """
        Tests inclusion without a prefix
        """
        router = Router([
            include("tests.compat.test_routing.chatroom_routing"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": "/boom/"}, consumer=None)
        self.assertRoute(router, channel="websocket.connect", content={"path": "/chat/django/"}, consumer=consumer_2, kwargs={"room": "django"})
        self.assertRoute(router, channel="websocket.connect", content={"path": "/mentions/"}, consumer=consumer_3, kwargs={})

    def test_include_prefix(self):
        """
        Tests inclusion with a prefix
        """
        router = Router([
            include("tests.compat.test_routing.chatroom_routing", path="^/ws/v(?P<version>[0-9]+)"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": "/boom/"}, consumer=None)
        self.assertRoute(router, channel="websocket.connect", content={"path": "/chat/django/"}, consumer=None)
        self.assertRoute(router, channel="websocket.connect", content={"path": "/ws/v2/chat/django/"}, consumer=consumer_2, kwargs={"version": "2", "room": "django"})
        self.assertRoute(router, channel="websocket.connect", content={"path": "/ws/v1/mentions/"}, consumer=consumer_3, kwargs={"version": "1"})

    def test_include_prefix_without_caret(self):
        """
        An include prefix without ^ (and included routes without ^) work too.
        """
        router = Router([
            include("tests.compat.test_routing.chatroom_routing_nocaret", path="/ws"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": "/ws/chat/django/"}, consumer=consumer_2, kwargs={"room": "django"})
        self.assertRoute(router, channel="websocket.connect", content={"path": "/ws/mentions/"}, consumer=consumer_3, kwargs={})
        self.assertRoute(router, channel="websocket.connect", content={"path": "/x/ws/mentions/"}, consumer=None)

    def test_positional_pattern(self):
        """
        Tests that regexes with positional groups are rejected.
        """
        with self.assertRaises(ValueError):
            Router([
                route("http.request", consumer_1, path=r"^/chat/([^/]+)/$"),
            ])
        with self.assertRaises(ValueError):
            route("http.request", consumer_1, path=r"/chat/([^/]+)/$")

    def test_mixed_unicode_bytes(self):
        """
        Tests that having the message key be bytes and pattern unicode (or vice-versa)
        still works.
        """
        # Unicode patterns, byte message
        router = Router([
            route("websocket.connect", consumer_1, path="^/foo/"),
            include("tests.compat.test_routing.chatroom_routing", path="^/ws/v(?P<version>[0-9]+)"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": b"/boom/"}, consumer=None)
        self.assertRoute(router, channel="websocket.connect", content={"path": b"/foo/"}, consumer=consumer_1)
        self.assertRoute(router, channel="websocket.connect", content={"path": b"/ws/v2/chat/django/"}, consumer=consumer_2, kwargs={"version": "2", "room": "django"})
        # Byte patterns, unicode message
        router = Router([
            route("websocket.connect", consumer_1, path=b"^/foo/"),
        ])
        self.assertRoute(router, channel="websocket.connect", content={"path": "/foo/"}, consumer=consumer_1)

    def test_channels(self):
        """
        Tests that the router reports channels to listen on correctly
        """
        router = Router([
            route("http.request", consumer_1, path=r"^/chat/$"),
            route("http.disconnect", consumer_2),
            route("http.request", consumer_3),
            route_class(ClassConsumer),
        ])
        # Initial check
        self.assertEqual(
            router.channels,
            {"http.request", "http.disconnect", "test.channel"},
        )
        # Dynamically add route, recheck
        router.add_route(route("websocket.receive", consumer_1))
        self.assertEqual(
            router.channels,
            {"http.request", "http.disconnect", "websocket.receive", "test.channel"},
        )

    def test_add_route_is_tried_last(self):
        router = Router([route("http.request", consumer_1, path=r"^/a/$")])
        router.add_route(route("http.request", consumer_2))
        self.assertRoute(router, channel="http.request", content={"path": "/a/"}, consumer=consumer_1)
        self.assertRoute(router, channel="http.request", content={"path": "/b/"}, consumer=consumer_2)

    def test_route_match_takes_a_message(self):
        entry = route("websocket.connect", consumer_1, path=r"/r/(?P<room>\w+)")
        message = Message({"path": "/r/lobby"}, "websocket.connect", None)
        self.assertEqual(entry.match(message), (consumer_1, {"room": "lobby"}))

    def test_route_class(self):
        """
        Tests route_class with/without prefix
        """
        router = Router([
            include([
                route_class(ClassConsumer, path="^/foobar/$"),
            ]),
        ])
        self.assertRoute(router, channel="test.channel", content={"path": "/foobar/"}, consumer=ClassConsumer)
        self.assertRoute(router, channel="test.channel", content={"path": "/"}, consumer=None)

    def test_top_level_imports(self):
        """
        1.x exported route, route_class and include from the package itself.
        """
        import chanlite

        self.assertIs(top_level_route, route)
        self.assertIs(chanlite.route_class, route_class)
        self.assertIs(chanlite.include, include)
