"""Channel, Group, Message and deferred sends."""

from __future__ import annotations

import pytest

import chanlite
from chanlite.channel import Channel, Group, deferred_sends, sends_are_deferred
from chanlite.message import Message


def test_top_level_imports_are_lazy_and_work():
    assert chanlite.Channel is Channel
    assert chanlite.Group is Group
    with pytest.raises(AttributeError):
        chanlite.NoSuchThing  # noqa: B018


def test_import_chanlite_needs_no_settings(tmp_path):
    import subprocess
    import sys

    code = ("import chanlite, os; assert 'DJANGO_SETTINGS_MODULE' not in os.environ; "
            "print(chanlite.__version__)")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=str(tmp_path.parent), timeout=60)
    assert out.returncode == 0, out.stderr


def test_channel_send_outside_consumer_is_immediate(channel_layer):
    Channel("thumbnails", channel_layer=channel_layer).send({"id": 1})
    assert channel_layer.receive(["thumbnails"]) == ("thumbnails", {"id": 1})


def test_channel_uses_alias_layer_lazily():
    from chanlite.layers import get_channel_layer

    chan = Channel("lazy-test")
    chan.send({"x": 1})
    assert get_channel_layer("default").receive(["lazy-test"]) == ("lazy-test", {"x": 1})


def test_deferred_sends_flush_on_success_in_order(channel_layer):
    chan = Channel("out", channel_layer=channel_layer)
    with deferred_sends():
        assert sends_are_deferred()
        chan.send({"n": 1})
        chan.send({"n": 2})
        assert channel_layer.receive(["out"]) == (None, None), "sent before the consumer ended"
    assert not sends_are_deferred()
    assert channel_layer.receive(["out"])[1] == {"n": 1}
    assert channel_layer.receive(["out"])[1] == {"n": 2}


def test_deferred_sends_discarded_when_consumer_raises(channel_layer):
    chan = Channel("out", channel_layer=channel_layer)
    with pytest.raises(RuntimeError), deferred_sends():
        chan.send({"n": 1})
        chan.send({"now": True}, immediately=True)
        raise RuntimeError("boom")
    assert channel_layer.receive(["out"])[1] == {"now": True}
    assert channel_layer.receive(["out"]) == (None, None)


def test_deferred_send_keeps_a_copy_and_validates_early(channel_layer):
    chan = Channel("out", channel_layer=channel_layer)
    content = {"list": [1]}
    with deferred_sends():
        chan.send(content)
        content["list"].append(2)
        with pytest.raises(TypeError, match="set"):
            chan.send({"bad": {1, 2}})
    assert channel_layer.receive(["out"])[1] == {"list": [1]}


def test_nested_deferred_sends_flush_once_at_the_end(channel_layer):
    chan = Channel("out", channel_layer=channel_layer)
    with deferred_sends():
        with deferred_sends():
            chan.send({"n": 1})
        assert channel_layer.receive(["out"]) == (None, None)
    assert channel_layer.receive(["out"])[1] == {"n": 1}


def test_flush_on_full_channel_logs_and_continues(channel_layer, monkeypatch, caplog):
    from chanlite import channel as channel_module
    from chanlite.layers.memory import InMemoryChannelLayer

    monkeypatch.setattr(channel_module, "FLUSH_RETRY_TIME", 0.05)
    fresh = channel_module.IntervalLog(channel_module.logger, 40, channel_module._dropped.message)
    monkeypatch.setattr(channel_module, "_dropped", fresh)  # no earlier test's interval
    layer = InMemoryChannelLayer(capacity=1)
    with deferred_sends():
        Channel("full", channel_layer=layer).send({"n": 1})
        Channel("full", channel_layer=layer).send({"n": 2})
        Channel("other", channel_layer=layer).send({"n": 3})
    assert layer.receive(["full"])[1] == {"n": 1}
    assert layer.receive(["full"]) == (None, None)
    assert layer.receive(["other"])[1] == {"n": 3}
    assert "dropped 1 deferred send(s)" in caplog.text and "to 'full'" in caplog.text


def test_group_add_discard_send(channel_layer):
    group = Group("room", channel_layer=channel_layer)
    a = Channel("a", channel_layer=channel_layer)
    group.add(a)
    group.add("b")
    group.send({"hi": 1})
    assert channel_layer.receive(["a"])[1] == {"hi": 1}
    assert channel_layer.receive(["b"])[1] == {"hi": 1}
    group.discard(a)
    with deferred_sends():
        group.send({"hi": 2})
        assert channel_layer.receive(["b"]) == (None, None)
    assert channel_layer.receive(["a"]) == (None, None)
    assert channel_layer.receive(["b"])[1] == {"hi": 2}


def test_send_requires_dict(channel_layer):
    with pytest.raises(TypeError, match="takes a dict"):
        Channel("x", channel_layer=channel_layer).send("text")


def test_message_dict_access_and_reply_channel(channel_layer):
    msg = Message({"reply_channel": "r!1", "path": "/x"}, "websocket.connect", channel_layer)
    assert msg["path"] == "/x" and "path" in msg and msg.get("nope", 3) == 3
    assert msg.channel == Channel("websocket.connect", channel_layer=channel_layer)
    assert msg.reply_channel.name == "r!1"
    assert msg.channel_layer is channel_layer
    assert Message({}, "x", channel_layer).reply_channel is None
    copy = msg.copy()
    copy["path"] = "/y"
    assert msg["path"] == "/x"


def test_message_unset_session_attribute_says_which_decorator(channel_layer):
    msg = Message({}, "x", channel_layer)
    with pytest.raises(AttributeError, match="@channel_session"):
        msg.channel_session  # noqa: B018
    with pytest.raises(AttributeError, match="channel_session_user"):
        msg.user  # noqa: B018
    assert not hasattr(msg, "http_session")
    msg.user = "u"
    assert msg.user == "u"
