"""The seed's Channels 1.x code examples, run unchanged except for imports.

Each example below is the seed's code *verbatim* (Channels 1.x imports);
:func:`port` rewrites only ``channels`` -> ``chanlite`` in import lines, which
is the whole porting story we promise. The examples are then driven through
the in-memory layer with real cookies and sessions.
"""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from chanlite.routing import Router, route_class
from chanlite.worker import dispatch

CLASS_CONSUMER = '''
from channels.generic.websockets import WebsocketConsumer

class MyConsumer(WebsocketConsumer):
    http_user = True         # 设置为 ``True`` 将会自动从 HTTP cookie 中登录用户,因此可以省去 channel_session_user 的设置。
    strict_ordering = False  # 默认设置

    def connection_groups(self, **kw):
        """返回 group 列表,并自动将本连接插入其中活删除
        """
        return ['test']

    def connect(self, message, **kw):
        """连接开始
        """
        self.message.reply_channel.send({'accept': True})

    def receive(self, text=None, bytes=None, **kw):
        """接收到信息时调用的函数
        """
        self.send(text=text, bytes=bytes)  # 将信息原封不动地返回

    def disconnect(self, message, **kw):
        """断开连接时将会被调用
        """
        pass
'''

JSON_CONSUMER = '''
from channels.generic.websockets import JsonWebsocketConsumer

class MyConsumer(JsonWebsocketConsumer):
    """使用与 WebsocketConsumer 基本一致
    """
    def receive(self, content, **kwargs):
        """这里的 content 会是 JSON 解码后的 Python 对象
        """
        self.send(content)
'''

DEMULTIPLEXER = '''
from channels.generic.websockets import WebsocketDemultiplexer, JsonWebsocketConsumer

class EchoConsumer(JsonWebsocketConsumer):
    def connect(self, message, multiplexer, **kwargs):
        # 通过 multiplexer 发送消息
        multiplexer.send({"status": "I just connected!"})

    def disconnect(self, message, multiplexer, **kwargs):
        print("Stream %s is closed" % multiplexer.stream)

    def receive(self, content, multiplexer, **kwargs):
        multiplexer.send({"original_message": content})  # 原封不动地返回消息

class AnotherConsumer(JsonWebsocketConsumer):
    def receive(self, content, multiplexer=None, **kwargs):
        # 你的实现
        pass

class Demultiplexer(WebsocketDemultiplexer):
    # Wire your JSON consumers here: {stream_name : consumer}
    consumers = {
        "echo": EchoConsumer,
        "other": AnotherConsumer,
    }
'''

FUNCTION_CONSUMERS = '''
from channels.routing import route
from channels import Group
from channels.auth import channel_session_user, channel_session_user_from_http

@channel_session_user_from_http
def connect(message):
    pass

@channel_session_user
def disconnect(message):
    pass

channel_routing = [
    route('websocket.connect', connect),
    route('websocket.disconnect', disconnect),
]
'''

ASGI = '''
# coding: utf-8

import os
from channels.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_project.settings")

channel_layer = get_channel_layer()
'''

_IMPORT = re.compile(r"^(from|import) channels\b", re.MULTILINE)


def port(source: str) -> dict:
    """Change only the imports (channels -> chanlite) and run the example."""
    ported = _IMPORT.sub(lambda m: f"{m.group(1)} chanlite", source)
    changed = [(a, b) for a, b in zip(source.splitlines(), ported.splitlines()) if a != b]
    assert changed and all(a.lstrip().startswith(("from ", "import ")) for a, _ in changed)
    namespace: dict = {"__name__": "seed_example"}
    exec(compile(ported, "<seed example>", "exec"), namespace)
    return namespace


@pytest.fixture
def cookie(db):
    User.objects.create_user("mei", password="pw-mei-123")
    client = Client()
    assert client.login(username="mei", password="pw-mei-123")
    name = django_settings.SESSION_COOKIE_NAME
    return [[b"cookie", f"{name}={client.cookies[name].value}".encode()]]


def replies(layer):
    out = []
    while (got := layer.receive(["r!"]))[0] is not None:
        out.append(got[1])
        assert len(out) <= 10_000, f"endless replies: {out[:5]!r}..."
    return out


def ws(order=0, reply="r!1", **extra):
    return {"reply_channel": reply, "path": "/ws/", "order": order, **extra}


@pytest.mark.django_db
def test_class_consumer_with_connection_groups_and_http_user(layer, cookie):
    MyConsumer = port(CLASS_CONSUMER)["MyConsumer"]
    seen_users = []

    class Spy(MyConsumer):
        def receive(self, text=None, bytes=None, **kw):
            seen_users.append(self.message.user.username)
            super().receive(text=text, bytes=bytes, **kw)

    router = Router([route_class(Spy)])
    dispatch(layer, router, "websocket.connect", ws(headers=cookie))
    assert layer.group_channels("test") == ["r!1"]
    dispatch(layer, router, "websocket.receive", ws(1, text="你好"))
    dispatch(layer, router, "websocket.receive", ws(2, bytes=b"\x01"))
    assert replies(layer) == [{"accept": True}, {"text": "你好"}, {"bytes": b"\x01"}]
    assert seen_users == ["mei", "mei"], "http_user did not log the cookie's user in"
    dispatch(layer, router, "websocket.disconnect", ws(3, code=1000))
    assert layer.group_channels("test") == []


def test_json_consumer(layer):
    MyConsumer = port(JSON_CONSUMER)["MyConsumer"]
    router = Router([route_class(MyConsumer)])
    dispatch(layer, router, "websocket.connect", ws())
    dispatch(layer, router, "websocket.receive", ws(1, text='{"a": [1, 2]}'))
    assert replies(layer) == [{"accept": True}, {"text": '{"a": [1, 2]}'}]


def test_demultiplexer(layer, capsys):
    Demultiplexer = port(DEMULTIPLEXER)["Demultiplexer"]
    router = Router([route_class(Demultiplexer)])
    dispatch(layer, router, "websocket.connect", ws())
    frame = json.dumps({"stream": "echo", "payload": {"hi": 1}})
    dispatch(layer, router, "websocket.receive", ws(1, text=frame))
    dispatch(
        layer,
        router,
        "websocket.receive",
        ws(2, text=json.dumps({"stream": "other", "payload": {}})),
    )
    dispatch(layer, router, "websocket.disconnect", ws(3, code=1000))
    assert [json.loads(m["text"]) if "text" in m else m for m in replies(layer)] == [
        {"accept": True},
        {"stream": "echo", "payload": {"status": "I just connected!"}},
        {"stream": "echo", "payload": {"original_message": {"hi": 1}}},
    ]
    assert "Stream echo is closed" in capsys.readouterr().out


@pytest.mark.django_db
def test_function_consumers_with_channel_session_user_from_http(layer, cookie):
    from chanlite.signals import consumer_finished

    router = Router(port(FUNCTION_CONSUMERS)["channel_routing"])
    assert router.channels == {"websocket.connect", "websocket.disconnect"}
    users = {}

    def record(sender, message, **kwargs):  # observe message.user without editing the example
        users[(message.channel.name, message.reply_channel.name)] = message.user

    consumer_finished.connect(record)
    try:
        dispatch(layer, router, "websocket.connect", ws(headers=cookie))
        dispatch(layer, router, "websocket.disconnect", ws(1, code=1000))
        dispatch(layer, router, "websocket.connect", ws(reply="r!2", headers=[]))
        dispatch(layer, router, "websocket.disconnect", ws(1, reply="r!2", code=1000))
    finally:
        consumer_finished.disconnect(record)
    assert users[("websocket.connect", "r!1")].username == "mei"
    assert users[("websocket.disconnect", "r!1")].username == "mei", (
        "user not kept for later messages"
    )
    assert not users[("websocket.disconnect", "r!2")].is_authenticated


def test_asgi_module(layer):
    namespace = port(ASGI)
    assert namespace["channel_layer"] is layer
    assert namespace["channel_layer"].alias == "default"
