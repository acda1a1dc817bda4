"""enforce_ordering: strict per-connection order, slight ordering, 1.x stall fixes."""

from __future__ import annotations

import random
import threading

import pytest

from chanlite.generic import WebsocketConsumer
from chanlite.ordering import ORDER_KEY, enforce_ordering, wait_channel_for
from chanlite.routing import Router, route, route_class
from chanlite.sessions import enforce_ordering as enforce_ordering_1x_path
from chanlite.sessions import session_for_reply_channel
from chanlite.worker import WorkerPool, dispatch

WAIT = 10.0


@pytest.fixture(autouse=True)
def cache_sessions(settings):
    """Channel sessions in the (thread-safe, per-process) locmem cache: no DB needed."""
    from django.core.cache import cache

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    cache.clear()  # sessions are keyed by reply channel; tests reuse "r!1"
    yield
    cache.clear()


def msg(order, reply="r!1", **extra):
    return {"reply_channel": reply, "path": "/", "order": order, **extra}


def pump(layer, router, channels=("websocket.receive",)):
    """Run every queued message (including requeued ones) in this thread.
    Bounded: a message requeued forever fails the test instead of spinning."""
    for _ in range(10_000):
        channel, content = layer.receive(list(channels))
        if channel is None:
            return
        dispatch(layer, router, channel, content)
    pytest.fail(f"still dispatching after 10000 messages: endless requeue? last {content!r}")


def test_importable_from_sessions_as_in_1x():
    assert enforce_ordering_1x_path is enforce_ordering


def test_early_message_waits_and_runs_after_the_missing_one(layer):
    seen = []

    @enforce_ordering
    def receive(message):
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))
    dispatch(layer, router, "websocket.receive", msg(3))
    assert seen == [0], "an early message ran out of order"
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 2
    dispatch(layer, router, "websocket.receive", msg(1))
    pump(layer, router)
    assert seen == [0, 1, 2, 3]
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 0
    assert "__chanlite_channel" not in str(seen)


def test_requeued_message_goes_after_the_consumers_replies(layer):
    @enforce_ordering
    def receive(message):
        message.reply_channel.send({"text": str(message["order"])})

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))
    dispatch(layer, router, "websocket.receive", msg(1))
    pump(layer, router)
    replies = [layer.receive(["r!"])[1]["text"] for _ in range(3)]
    assert replies == ["0", "1", "2"]


def test_requeue_is_sent_after_the_replies_in_global_send_order(layer):
    """With several workers, the requeued frame may run (and reply) as soon as
    it is sent, so it must be sent *after* the replies of the frame that
    released it: the order of the layer's sends says whether it was."""
    sent: list[tuple[str, object]] = []
    real_send = layer.send

    def recording_send(channel, message):
        sent.append((channel, message.get("text", message.get("order"))))
        return real_send(channel, message)

    layer.send = recording_send

    @enforce_ordering
    def receive(message):
        message.reply_channel.send({"text": f"reply {message['order']}"})

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))  # parked behind 1
    sent.clear()
    dispatch(layer, router, "websocket.receive", msg(1))  # runs, then releases 2
    assert sent == [("r!1", "reply 1"), ("websocket.receive", 2)], sent


def test_consumer_that_raises_does_not_stall_the_connection(layer):
    """1.x never advanced the order after a failure: every later frame waited forever."""
    seen = []

    @enforce_ordering
    def receive(message):
        if message["order"] == 1:
            raise RuntimeError("bad frame")
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))  # parked behind 1
    with pytest.raises(RuntimeError):
        dispatch(layer, router, "websocket.receive", msg(1))
    pump(layer, router)
    assert seen == [0, 2]


def test_parked_message_is_released_if_its_turn_came_while_parking(layer, monkeypatch):
    """The race 1.x lost: message 2 reads 'next is 1', then 1 finishes and finds an
    empty wait channel, then 2 parks. 2 must notice and release itself."""
    seen = []

    @enforce_ordering
    def receive(message):
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    real_send = layer.send

    def send(channel, content):
        if channel == wait_channel_for("r!1"):
            # message 1 completes on "another worker" right now
            session = session_for_reply_channel("r!1")
            session[ORDER_KEY] = 2
            session.save()
            seen.append(1)
        return real_send(channel, content)

    monkeypatch.setattr(layer, "send", send)
    dispatch(layer, router, "websocket.receive", msg(2))
    monkeypatch.undo()
    pump(layer, router)
    assert seen == [0, 1, 2], "message 2 was stranded in the wait channel"


def test_stale_duplicate_is_dropped(layer, caplog):
    seen = []

    @enforce_ordering
    def receive(message):
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    for order in (0, 1, 1):
        dispatch(layer, router, "websocket.receive" if order else "websocket.connect", msg(order))
    assert seen == [0, 1]
    assert "already ran up to order 1" in caplog.text


def test_slight_ordering_only_waits_for_connect(layer):
    seen = []

    @enforce_ordering(slight=True)
    def consumer(message):
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], consumer)])
    dispatch(layer, router, "websocket.receive", msg(2))
    dispatch(layer, router, "websocket.receive", msg(1))
    assert seen == []
    dispatch(layer, router, "websocket.connect", msg(0))
    pump(layer, router)
    assert seen == [0, 1, 2]
    dispatch(layer, router, "websocket.receive", msg(5))  # gaps are fine once connected
    assert seen == [0, 1, 2, 5]


def test_needs_order_field(layer):
    router = Router([route("thumbnails", enforce_ordering(lambda m: None))])
    with pytest.raises(ValueError, match="no 'order' field"):
        dispatch(layer, router, "thumbnails", {"reply_channel": "r!1"})


class Ordered(WebsocketConsumer):
    strict_ordering = True
    log: list = []
    lock = threading.Lock()
    done = threading.Event()
    expected = 0

    def receive(self, text=None, bytes=None, **kwargs):
        with self.lock:
            self.log.append((self.message["reply_channel"], self.message["order"]))
            if len(self.log) == type(self).expected:
                self.done.set()


def test_strict_ordering_class_consumer_with_a_worker_pool(layer):
    """Frames of two connections sent scrambled to a 3-thread pool run in order per connection."""
    Ordered.log = []
    Ordered.done = threading.Event()
    frames = 15
    Ordered.expected = 2 * frames
    router = Router([route_class(Ordered)])
    for reply in ("r!a", "r!b"):
        dispatch(layer, router, "websocket.connect", msg(0, reply=reply))
    layer.receive(["r!"]), layer.receive(["r!"])  # the accepts
    scrambled = [(reply, order) for reply in ("r!a", "r!b") for order in range(1, frames + 1)]
    random.Random(4).shuffle(scrambled)
    pool = WorkerPool(layer, router, threads=3)
    pool.start()
    try:
        for reply, order in scrambled:
            layer.send("websocket.receive", msg(order, reply=reply, text=str(order)))
        assert Ordered.done.wait(WAIT), (
            f"only {len(Ordered.log)} of {Ordered.expected} frames ran: {Ordered.log}"
        )
    finally:
        assert pool.stop(WAIT)
    for reply in ("r!a", "r!b"):
        orders = [order for r, order in Ordered.log if r == reply]
        assert orders == list(range(1, frames + 1)), f"{reply} ran out of order: {orders}"
