"""enforce_ordering: strict per-connection order, slight ordering, 1.x stall fixes."""

from __future__ import annotations

import random
import threading

import pytest

from chanlite.generic import WebsocketConsumer
from chanlite.layers.memory import InMemoryChannelLayer
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


def recording_router():
    """An ``enforce_ordering`` consumer on connect and receive that records
    the order of each frame it runs: ``(router, seen)``."""
    seen = []

    @enforce_ordering
    def receive(message):
        seen.append(message["order"])

    return Router([route(["websocket.connect", "websocket.receive"], receive)]), seen


def test_importable_from_sessions_as_in_1x():
    assert enforce_ordering_1x_path is enforce_ordering


def test_early_message_waits_and_runs_after_the_missing_one(layer):
    router, seen = recording_router()
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
    router, seen = recording_router()
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
    router, seen = recording_router()
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


# --- Behaviours the mutation run found unpinned (issue 20) -----------------

WAIT_CHANNELS = "__chanlite.wait.*"


def ordering_errors(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "chanlite.ordering" and r.levelname == "ERROR"]


def test_a_full_wait_channel_drop_is_logged_with_the_connection_and_capacity(caplog):
    """The wait channel holds one message: the second early frame cannot park,
    and the error says whose frame was dropped and the capacity to raise."""
    layer = InMemoryChannelLayer(channel_capacity={WAIT_CHANNELS: 1})
    router, seen = recording_router()
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))  # parked: the wait channel is now full
    dispatch(layer, router, "websocket.receive", msg(3))  # cannot park
    assert ordering_errors(caplog) == [
        "dropping an out-of-order message of r!1: its wait channel is full (1 messages ahead "
        "of a missing one); raise the layer capacity"
    ]
    dispatch(layer, router, "websocket.receive", msg(1))
    pump(layer, router)
    assert seen == [0, 1, 2], "only the dropped frame may be missing"


def test_a_parked_message_that_cannot_be_parked_again_is_logged(caplog):
    """Releasing drains the wait channel and parks back what may not run yet;
    if another worker parked a frame in between and filled it, the frame that
    could not go back is dropped with an error naming the connection."""
    layer = InMemoryChannelLayer(channel_capacity={WAIT_CHANNELS: 1})
    wait = wait_channel_for("r!1")
    router, seen = recording_router()
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(3))  # parked behind 1 and 2
    real_receive = layer.receive

    def receive_then_another_worker_parks(channels, *args, **kwargs):
        channel, content = real_receive(channels, *args, **kwargs)
        if channels == [wait] and channel is None:
            layer.send(wait, {**msg(4), "__chanlite_channel": "websocket.receive"})
        return channel, content

    layer.receive = receive_then_another_worker_parks
    # releases: 3 must go back, but 4 took its place
    dispatch(layer, router, "websocket.receive", msg(1))
    layer.receive = real_receive
    assert ordering_errors(caplog) == ["dropped a parked message of r!1: wait channel full"]
    assert seen == [0, 1]


def test_slight_parked_message_is_released_if_connect_ran_while_parking(layer, monkeypatch):
    """The parking race under slight ordering: frame 2 finds the connection not
    yet connected, connect finishes before 2 is parked; the re-check after
    parking must use the slight rule (connected = anything runs)."""
    seen = []

    @enforce_ordering(slight=True)
    def consumer(message):
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], consumer)])
    real_send = layer.send

    def send(channel, content):
        if channel == wait_channel_for("r!1"):
            session = session_for_reply_channel("r!1")
            session[ORDER_KEY] = 1  # connect ran on "another worker" right now
            session.save()
            seen.append(0)
        return real_send(channel, content)

    monkeypatch.setattr(layer, "send", send)
    dispatch(layer, router, "websocket.receive", msg(2))
    monkeypatch.undo()
    pump(layer, router)
    assert seen == [0, 2], "frame 2 was stranded in the wait channel"


def test_slight_connect_releases_every_parked_frame_at_once(layer):
    """Under slight ordering everything may run once connected, so connect
    requeues all waiting frames together (strict requeues one at a time)."""
    @enforce_ordering(slight=True)
    def consumer(message):
        pass

    router = Router([route(["websocket.connect", "websocket.receive"], consumer)])
    dispatch(layer, router, "websocket.receive", msg(1))
    dispatch(layer, router, "websocket.receive", msg(2))
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 2
    dispatch(layer, router, "websocket.connect", msg(0))
    assert layer.channel_statistics("websocket.receive")["messages_pending"] == 2
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 0


def test_strict_release_requeues_only_the_next_frame(layer):
    @enforce_ordering
    def receive(message):
        pass

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    for order in (3, 2):
        dispatch(layer, router, "websocket.receive", msg(order))
    dispatch(layer, router, "websocket.receive", msg(1))
    assert layer.receive(["websocket.receive"], block=False)[1]["order"] == 2
    assert layer.receive(["websocket.receive"], block=False) == (None, None)
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 1


def test_a_duplicated_frame_is_dropped_not_parked_for_good(layer, caplog):
    """Strict mode: two copies of frame 2 wait; 1 runs and releases one copy;
    once 2 has run the other copy can never be next, so the following
    release drops it (logged) instead of parking it again forever."""
    router, seen = recording_router()
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(2))
    dispatch(layer, router, "websocket.receive", msg(2))
    dispatch(layer, router, "websocket.receive", msg(1))
    with caplog.at_level("WARNING", logger="chanlite.ordering"):
        pump(layer, router)
    assert seen == [0, 1, 2]
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 0
    assert [r.getMessage() for r in caplog.records if r.name == "chanlite.ordering"] == [
        "dropped a duplicate frame of r!1: order 2 already ran (next is 3)"]


def test_release_follows_the_session_as_the_consumer_left_it(layer):
    """A consumer that empties its channel session resets the connection to
    "not connected": a parked frame stays parked, as a new one would, and
    releasing does not fail on the missing order."""
    seen = []

    @enforce_ordering(slight=True)
    def consumer(message):
        seen.append(message["order"])
        if message["order"] == 0:
            message.channel_session.clear()

    router = Router([route(["websocket.connect", "websocket.receive"], consumer)])
    dispatch(layer, router, "websocket.receive", msg(1))  # waits for connect
    dispatch(layer, router, "websocket.connect", msg(0))
    assert layer.channel_statistics("websocket.receive")["messages_pending"] == 0, (
        "frame 1 was released although the session says the connection is not connected")
    pump(layer, router)
    assert seen == [0]
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 1
    dispatch(layer, router, "websocket.receive", msg(2))  # a new frame waits too
    assert seen == [0]


def test_a_released_message_goes_back_to_its_own_channel_without_the_marker(layer):
    """A parked disconnect is requeued on websocket.disconnect (not on
    websocket.receive), and the key remembering its channel is removed."""
    seen = []

    @enforce_ordering
    def consumer(message):
        seen.append((message.channel.name, message["order"], sorted(message.content)))

    channels = ("websocket.connect", "websocket.receive", "websocket.disconnect")
    router = Router([route(list(channels), consumer)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.disconnect", msg(2))  # before frame 1: waits
    dispatch(layer, router, "websocket.receive", msg(1))
    pump(layer, router, channels)
    keys = ["order", "path", "reply_channel"]
    assert seen == [("websocket.connect", 0, keys), ("websocket.receive", 1, keys),
                    ("websocket.disconnect", 2, keys)]


def parking_race_with_a_full_origin(monkeypatch, room_appears: bool):
    """Frame 3 is parked; frame 2 reads "next is 1", frame 1 finishes on
    "another worker" while 2 parks, so 2 releases itself - into a full
    ``websocket.receive`` (capacity 1, holding a filler). ``room_appears``:
    another worker takes the filler right after the first refused send.
    Returns (layer, router, seen)."""
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    wait = wait_channel_for("r!1")
    router, seen = recording_router()
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(3))  # parked behind 1 and 2
    layer.send("websocket.receive", {"filler": True})
    real_send = layer.send

    def send(channel, content):
        if channel == wait and content["order"] == 2:
            session = session_for_reply_channel("r!1")
            session[ORDER_KEY] = 2  # frame 1 completes on "another worker" right now
            session.save()
            seen.append(1)
        try:
            return real_send(channel, content)
        except layer.ChannelFull:
            if room_appears and channel == "websocket.receive":
                assert layer.receive(["websocket.receive"], block=False)[1] == {"filler": True}
            raise

    monkeypatch.setattr(layer, "send", send)
    dispatch(layer, router, "websocket.receive", msg(2))  # must not raise ChannelFull
    monkeypatch.undo()
    return layer, router, seen


def test_a_self_released_frame_waits_for_room_in_a_full_channel(monkeypatch):
    """The self-release after the parking race is a deferred send, like every
    requeue: a full origin channel gets the bounded retry, not ChannelFull
    raised to the worker (which also lost frame 3, already taken off the
    wait channel and never parked again)."""
    layer, router, seen = parking_race_with_a_full_origin(monkeypatch, room_appears=True)
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 1  # 3
    pump(layer, router)
    assert seen == [0, 1, 2, 3]


def test_a_self_released_frame_still_refused_after_the_retry_is_a_logged_drop(monkeypatch):
    from chanlite import channel as channel_module

    monkeypatch.setattr(channel_module, "FLUSH_RETRY_TIME", 0.0)
    dropped = channel_module._dropped.total
    layer, router, seen = parking_race_with_a_full_origin(monkeypatch, room_appears=False)
    assert channel_module._dropped.total == dropped + 1  # counted in the drop log line
    # Frame 3 went back to the wait channel: not lost with frame 2.
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 1
    assert layer.receive(["websocket.receive"], block=False)[1] == {"filler": True}
    assert seen == [0, 1]


def test_a_raising_consumer_whose_release_finds_the_channel_full_still_raises_its_error(caplog):
    """After a consumer raised, the release is immediate (its deferred sends are
    discarded). A full channel there is logged and the remaining parked frames
    go back to the wait channel; the worker sees the consumer's exception."""
    layer = InMemoryChannelLayer(channel_capacity={"websocket.receive": 1})
    seen = []

    @enforce_ordering
    def receive(message):
        if message["order"] == 1:
            layer.send("websocket.receive", {"filler": True})  # the channel fills meanwhile
            raise RuntimeError("bad frame")
        seen.append(message["order"])

    router = Router([route(["websocket.connect", "websocket.receive"], receive)])
    dispatch(layer, router, "websocket.connect", msg(0))
    dispatch(layer, router, "websocket.receive", msg(3))
    dispatch(layer, router, "websocket.receive", msg(2))
    with pytest.raises(RuntimeError, match="bad frame"):
        dispatch(layer, router, "websocket.receive", msg(1))
    assert ordering_errors(caplog) == [
        "dropped a parked message of r!1 (order 2): channel 'websocket.receive' is full"]
    assert layer.channel_statistics(wait_channel_for("r!1"))["messages_pending"] == 1  # 3
    assert seen == [0]
