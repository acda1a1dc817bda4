"""The unittest side of chanlite.testing: ChannelTestCase, TransactionChannelTestCase,
apply_routes (decorator on functions and classes, context manager)."""

from __future__ import annotations

import json
import unittest

from django.contrib.auth.models import User
from django.test import SimpleTestCase

from chanlite.channel import Channel
from chanlite.layers import get_channel_layer, set_channel_layer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import get_router, route
from chanlite.testing import (
    ChannelTestCase,
    ChannelTestCaseMixin,
    Client,
    HttpClient,
    TransactionChannelTestCase,
    WSClient,
    apply_routes,
)
from tests.toolkit.sample_app.routing import channel_routing, echo_routing


class LayerSwapTests(ChannelTestCase):
    def test_layer_is_fresh_in_memory_with_fake_clock(self):
        layer = get_channel_layer("default")
        self.assertIsInstance(layer, InMemoryChannelLayer)
        self.assertIs(layer, self.channel_layer)
        self.assertIs(layer.clock, self.clock)

    def test_expiry_follows_the_fake_clock(self):
        Channel("later").send({"n": 1})
        self.clock.advance(self.channel_layer.expiry - 1)
        self.assertEqual(self.get_next_message("later", require=True)["n"], 1)
        Channel("later").send({"n": 2})
        self.clock.advance(self.channel_layer.expiry)
        self.assertIsNone(self.get_next_message("later"))

    def test_get_next_message_require_fails_the_test(self):
        with self.assertRaisesRegex(AssertionError, "expected a message on channel 'nothing'"):
            self.get_next_message("nothing", require=True)

    def test_configured_routing_is_kept(self):
        self.assertEqual(get_router("default").channels, set())  # tests/routing.py: []


class RestoreTests(unittest.TestCase):
    """The swap really goes away: run a ChannelTestCase inside a plain test."""

    def test_previous_layer_comes_back(self):
        original = InMemoryChannelLayer()
        previous = set_channel_layer("default", original)
        seen = []

        class Inner(ChannelTestCaseMixin, SimpleTestCase):
            def test_it(self):
                seen.append(get_channel_layer("default"))

        try:
            result = unittest.TestResult()
            Inner("test_it")(result)  # __call__: Django's _pre_setup/_post_teardown run
            self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
            self.assertIsNot(seen[0], original)
            self.assertIs(get_channel_layer("default"), original)
        finally:
            set_channel_layer("default", previous)


@apply_routes(channel_routing)
class SampleAppTests(ChannelTestCase):
    def setUp(self):
        super().setUp()
        self.client = WSClient()

    def test_echo(self):
        self.client.send_and_consume("websocket.connect", path="/echo/")
        self.client.send_and_consume("websocket.receive", text="hi", path="/echo/")
        self.assertEqual(self.client.receive(json=False), "hi")

    def test_json(self):
        self.client.connect("/calc/")
        self.client.send_and_consume("websocket.receive", text={"numbers": [2, 3]})
        self.assertEqual(self.client.receive(), {"sum": 5, "order": 1})

    def test_demultiplexed(self):
        self.client.connect("/streams/")
        self.client.send_and_consume(
            "websocket.receive", text={"stream": "upper", "payload": {"text": "abc"}}
        )
        self.assertEqual(self.client.receive()["payload"], {"upper": "ABC"})

    def test_cookie_authenticated(self):
        User.objects.create_user("carol", password="secret")
        self.assertTrue(self.client.login(username="carol", password="secret"))
        self.client.connect("/whoami/")
        self.client.send_and_consume("websocket.receive", text="yo")
        self.assertEqual(self.client.receive(json=False), "carol: yo")

    def test_anonymous_is_refused(self):
        self.client.connect("/whoami/", check_accept=False)
        self.assertEqual(self.client.receive(), {"close": True})

    def test_group_chat(self):
        other = WSClient()
        self.client.connect("/chat/r1/")
        other.connect("/chat/r1/")
        other.send_and_consume("websocket.receive", text={"m": 1})
        self.assertEqual(self.client.receive(), {"room": "r1", "said": {"m": 1}})
        self.assertEqual(other.receive(), {"room": "r1", "said": {"m": 1}})

    def test_background_task(self):
        self.client.connect("/tasks/")
        self.client.send("websocket.receive", text={"square": 6})
        self.assertEqual(self.run_until_idle(), 2)
        self.assertEqual(self.client.receive(), {"queued": 6})
        self.assertEqual(self.client.receive(), {"result": 36})

    def test_http(self):
        response = HttpClient().get("/chan/hello/?dan")
        self.assertEqual((response.status, response.text), (200, "hello dan"))

    def test_plain_client_1x_style(self):
        client = Client()
        client.send_and_consume("sample.tasks", {"n": 5, "notify": client.reply_channel})
        self.assertEqual(json.loads(client.receive()["text"]), {"result": 25})

    def test_a_chosen_reply_channel_receives_its_replies(self):
        """A reply channel of the test's choosing, plain or process-specific
        (``x!y`` is read through its prefix ``x!``), gets what is sent to it."""
        for name in ("daphne.response.1", "test.chosen!c7", "test.single?r1"):
            client = Client(reply_channel=name)
            client.send_and_consume("sample.tasks", {"n": 3, "notify": client.reply_channel})
            self.assertEqual(json.loads(client.receive()["text"]), {"result": 9}, name)
            self.assertIsNone(client.receive(), name)

    def test_class_routes_are_applied_per_test(self):
        self.assertIn("sample.tasks", get_router("default").channels)


class ApplyRoutesTests(unittest.TestCase):
    def test_context_manager_restores_the_previous_router(self):
        before = get_router("default")
        with apply_routes([route("a.channel", print)]) as router:
            self.assertIs(get_router("default"), router)
            self.assertEqual(router.channels, {"a.channel"})
            with apply_routes(echo_routing):
                self.assertEqual(get_router("default").channels,
                                 {"websocket.connect", "websocket.receive"})
            self.assertIs(get_router("default"), router)
        self.assertIs(get_router("default"), before)

    def test_decorator_restores_even_when_the_test_fails(self):
        before = get_router("default")

        @apply_routes([route("b.channel", print)])
        def failing():
            self.assertEqual(get_router("default").channels, {"b.channel"})
            raise ValueError("test failed")

        with self.assertRaises(ValueError):
            failing()
        self.assertIs(get_router("default"), before)

    def test_list_of_lists_and_single_route(self):
        with apply_routes([echo_routing, [route("c.channel", print)]]) as router:
            self.assertEqual(
                router.channels, {"websocket.connect", "websocket.receive", "c.channel"}
            )
        with apply_routes(route("d.channel", print)) as router:
            self.assertEqual(router.channels, {"d.channel"})


class TransactionTests(TransactionChannelTestCase):
    def test_layers_swapped_and_database_usable(self):
        self.assertIs(get_channel_layer("default").clock, self.clock)
        User.objects.create_user("erin")
        with apply_routes(channel_routing):
            client = WSClient()
            client.force_login(User.objects.get(username="erin"))
            client.connect("/whoami/")
            client.send_and_consume("websocket.receive", text="t")
            self.assertEqual(client.receive(json=False), "erin: t")


class MultipleAliasTests(ChannelTestCase):
    test_channel_aliases = ["default"]

    def test_unknown_alias_is_a_clear_error(self):
        from django.core.exceptions import ImproperlyConfigured

        from chanlite.testing.layers import make_test_layer

        with self.assertRaisesRegex(ImproperlyConfigured, "no channel layer 'other'"):
            make_test_layer("other")
