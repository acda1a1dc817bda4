from __future__ import unicode_literals

import copy

from django.test import SimpleTestCase, override_settings

from chanlite import route, route_class
from chanlite.exceptions import DenyConnection
from chanlite.generic.websockets import WebsocketConsumer
from chanlite.message import Message
from chanlite.security.websockets import (
    AllowedHostsOnlyOriginValidator,
    BaseOriginValidator,
    allowed_hosts_only,
)
from chanlite.test import ChannelTestCase, WSClient, apply_routes


@allowed_hosts_only
def connect(message):
    return True


class ExampleComOnly(BaseOriginValidator):
    def validate_origin(self, message, origin):
        return origin == "https://example.com"


@ExampleComOnly
def custom_connect(message):
    return True


class OriginValidationTestCase(SimpleTestCase):
    connect_message = {
        "path": "/",
        "client": ["127.0.0.1", 54321],
        "server": ["127.0.0.1", 8000],
        "reply_channel": "test-reply",
        "headers": [],
    }

    def setUp(self):
        self.message = Message(copy.deepcopy(self.connect_message), "websocket.connect", None)

    def with_origin(self, origin):
        self.message.content["headers"] = [[b"origin", origin]]
        return self.message

    @override_settings(ALLOWED_HOSTS=["example.com"])
    def test_allowed_hosts_only(self):
        self.assertTrue(connect(self.with_origin(b"https://example.com")))
        self.assertTrue(connect(self.with_origin(b"http://example.com:8080")))
        self.assertRaises(DenyConnection, connect, self.with_origin(b"https://evil.example"))

    @override_settings(ALLOWED_HOSTS=[".example.com"])
    def test_allowed_subdomains(self):
        self.assertTrue(connect(self.with_origin(b"https://www.example.com")))
        self.assertRaises(DenyConnection, connect, self.with_origin(b"https://example.org"))

    @override_settings(ALLOWED_HOSTS=["example.com"])
    def test_missing_empty_or_non_ascii_origin(self):
        self.assertRaises(DenyConnection, connect, self.message)
        self.assertRaises(DenyConnection, connect, self.with_origin(b""))
        self.assertRaises(DenyConnection, connect, self.with_origin("https://exämple.com".encode("utf-8")))

    @override_settings(ALLOWED_HOSTS=[], DEBUG=True)
    def test_debug_allows_localhost(self):
        self.assertTrue(connect(self.with_origin(b"http://localhost:8000")))
        self.assertTrue(connect(self.with_origin(b"http://127.0.0.1:8000")))
        self.assertTrue(connect(self.with_origin(b"http://[::1]:8000")))
        self.assertRaises(DenyConnection, connect, self.with_origin(b"http://example.com"))

    def test_custom_validator(self):
        self.assertTrue(custom_connect(self.with_origin(b"https://example.com")))
        self.assertRaises(DenyConnection, custom_connect, self.with_origin(b"https://example.org"))

    def test_allowed_hosts_only_is_the_validator(self):
        self.assertIs(allowed_hosts_only, AllowedHostsOnlyOriginValidator)


def ws_connect(message):
    message.reply_channel.send({"accept": True})


class GuardedConsumer(WebsocketConsumer):

    @allowed_hosts_only
    def connect(self, message, **kwargs):
        super(GuardedConsumer, self).connect(message, **kwargs)


@override_settings(ALLOWED_HOSTS=["example.com"])
class OriginConsumerTests(ChannelTestCase):

    def test_function_consumer(self):
        with apply_routes([route("websocket.connect", allowed_hosts_only(ws_connect))]):
            client = WSClient()
            client.set_header("origin", "https://example.com")
            client.send_and_consume("websocket.connect", path="/")

            client = WSClient()
            client.set_header("origin", "https://evil.example")
            client.send_and_consume("websocket.connect", path="/", check_accept=False)
            self.assertEqual(client.receive(), {"close": True})

    def test_class_consumer(self):
        with apply_routes([route_class(GuardedConsumer)]):
            client = WSClient()
            client.set_header("origin", "https://example.com")
            client.send_and_consume("websocket.connect", path="/")

            client = WSClient()
            client.send_and_consume("websocket.connect", path="/", check_accept=False)
            self.assertEqual(client.receive(), {"close": True})

            client = WSClient()
            client.set_header("origin", "https://evil.example")
            with self.assertRaisesMessage(AssertionError, "rejected"):
                client.send_and_consume("websocket.connect", path="/")
