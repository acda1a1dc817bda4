"""Worker, WorkerPool, dispatch() and graceful shutdown, through the in-memory layer."""

from __future__ import annotations

import logging
import signal
import threading

import pytest

from chanlite.channel import Channel
from chanlite.exceptions import ConsumeLater, DenyConnection
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import Router, route
from chanlite.signals import consumer_finished, consumer_started
from chanlite.worker import GracefulShutdown, Worker, WorkerPool, dispatch, filter_channels

WAIT = 10.0  # generous bound for cross-thread waits; failures say what did not happen


@pytest.fixture
def layer():
    return InMemoryChannelLayer()


def reply(message, **kwargs):
    message.reply_channel.send({"text": f"{message.channel.name}:{sorted(kwargs.items())}"})


def test_dispatch_runs_consumer_and_flushes_sends(layer):
    router = Router([route("websocket.connect", reply, path=r"^/(?P<room>\w+)/$")])
    assert dispatch(layer, router, "websocket.connect", {"reply_channel": "r!1", "path": "/lobby/"})
    assert layer.receive(["r!"]) == ("r!1", {"text": "websocket.connect:[('room', 'lobby')]"})


def test_dispatch_without_route_logs_and_returns_false(layer, caplog):
    router = Router([route("websocket.connect", reply, path=r"^/ws/$")])
    assert not dispatch(layer, router, "websocket.connect", {"path": "/nope/"})
    assert "no route matches a message on 'websocket.connect' (path '/nope/')" in caplog.text


def test_dispatch_propagates_error_and_discards_sends(layer):
    def failing(message):
        message.reply_channel.send({"text": "never"})
        raise KeyError("boom")

    router = Router([route("x", failing)])
    with pytest.raises(KeyError):
        dispatch(layer, router, "x", {"reply_channel": "r!1"})
    assert layer.receive(["r!"]) == (None, None)


def test_dispatch_sends_signals_even_on_error(layer):
    seen = []

    def started(sender, message, **kw):
        seen.append(("started", message.channel.name))

    def finished(sender, message, **kw):
        seen.append(("finished", message.channel.name))

    consumer_started.connect(started)
    consumer_finished.connect(finished)
    try:
        router = Router([route("x", lambda m: 1 / 0)])
        with pytest.raises(ZeroDivisionError):
            dispatch(layer, router, "x", {})
    finally:
        consumer_started.disconnect(started)
        consumer_finished.disconnect(finished)
    assert seen == [("started", "x"), ("finished", "x")]


@pytest.mark.django_db
def test_close_old_connections_is_connected_to_consumer_signals():
    from django.db import close_old_connections

    for signal_ in (consumer_started, consumer_finished):
        # Django 5.0+ returns (sync, async) receiver lists; 4.2 returns one list.
        live = signal_._live_receivers(None)
        receivers = live[0] + live[1] if isinstance(live, tuple) else live
        assert close_old_connections in receivers


def test_deny_connection_closes_and_discards(layer):
    def deny(message):
        message.reply_channel.send({"accept": True})
        raise DenyConnection

    router = Router([route("websocket.connect", deny), route("websocket.receive", deny)])
    dispatch(layer, router, "websocket.connect", {"reply_channel": "r!1", "path": "/"})
    assert layer.receive(["r!"]) == ("r!1", {"close": True})
    assert layer.receive(["r!"]) == (None, None)
    with pytest.raises(ValueError, match="only meaningful in a websocket.connect"):
        dispatch(layer, router, "websocket.receive", {"reply_channel": "r!1", "path": "/"})


def test_consume_later_requeues_with_a_bound(layer, caplog):
    def later(message):
        raise ConsumeLater

    router = Router([route("task", later)])
    dispatch(layer, router, "task", {"n": 1})
    channel, content = layer.receive(["task"])
    assert content == {"n": 1, "__retries__": 1}
    dispatch(layer, router, "task", {"n": 1, "__retries__": 10})
    assert layer.receive(["task"]) == (None, None)
    assert "raised ConsumeLater 10 times" in caplog.text


def test_filter_channels_globs():
    names = {"http.request", "websocket.connect", "websocket.receive", "thumbnail"}
    assert filter_channels(names, only_channels=["websocket.*"]) == [
        "websocket.connect",
        "websocket.receive",
    ]
    assert filter_channels(names, exclude_channels=["thumb*", "http.*"]) == [
        "websocket.connect", "websocket.receive"]


def test_worker_refuses_to_listen_on_nothing(layer):
    router = Router([route("thumbnail", reply)])
    with pytest.raises(ValueError, match="listen on no channel"):
        Worker(layer, router, exclude_channels=["thumbnail"])


def test_worker_logs_consumer_error_and_carries_on(layer, caplog):
    """A consumer that raises is logged with its traceback; the worker keeps going
    and the failed consumer's deferred sends are discarded."""
    done = threading.Event()

    def task(message):
        Channel("results", channel_layer=message.channel_layer).send({"n": message["n"]})
        if message["n"] == 1:
            raise RuntimeError("thumbnail 1 is corrupt")
        done.set()

    router = Router([route("thumbnails", task)])
    worker = Worker(layer, router)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        thread.start()
        Channel("thumbnails", channel_layer=layer).send({"n": 1})
        Channel("thumbnails", channel_layer=layer).send({"n": 2})
        assert done.wait(WAIT), "the worker did not run the second message after the first raised"
        worker.stop()
        thread.join(WAIT)
    assert not thread.is_alive(), "worker.stop() did not end run()"
    assert "error in the consumer of a message on 'thumbnails'" in caplog.text
    assert "RuntimeError: thumbnail 1 is corrupt" in caplog.text  # traceback logged
    assert layer.receive(["results"]) == ("results", {"n": 2})
    assert layer.receive(["results"]) == (None, None), "the failed consumer's send escaped"


def test_only_and_exclude_channels_limit_what_a_worker_takes(layer):
    ran = []
    router = Router([route("a", lambda m: ran.append("a")), route("b", lambda m: ran.append("b"))])
    worker = Worker(layer, router, exclude_channels=["b"])
    assert worker.channels == ["a"]
    layer.send("b", {})
    layer.send("a", {})
    channel, content = layer.receive(worker.channels)
    worker.handle(channel, content)
    assert ran == ["a"]
    assert layer.receive(["b"]) == ("b", {}), "message on an excluded channel was consumed"


def test_idle_worker_stops_promptly_without_waiting_for_timeout(layer):
    router = Router([route("a", reply)])
    worker = Worker(layer, router)
    worker.receive_timeout = 3600  # only the wake-up can end the receive in time
    ready = threading.Event()
    from chanlite.signals import worker_ready

    def on_ready(sender, worker, **kw):
        ready.set()

    worker_ready.connect(on_ready)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert ready.wait(WAIT)
        worker.stop()
        thread.join(WAIT)
        assert not thread.is_alive(), "stop() did not wake a worker blocked in receive()"
    finally:
        worker_ready.disconnect(on_ready)
    assert layer.global_statistics()["messages_pending"] == 0, "wake-up message left behind"


def _blocking_pool(layer, threads=2):
    """A pool whose 'slow' consumer blocks until released: an in-flight consumer."""
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def slow(message):
        started.set()
        assert release.wait(WAIT), "test never released the consumer"
        Channel("done", channel_layer=message.channel_layer).send({"ok": True})
        finished.set()

    pool = WorkerPool(layer, Router([route("slow", slow)]), threads=threads)
    return pool, started, release, finished


def test_worker_pool_stop_drains_in_flight_consumer(layer):
    pool, started, release, finished = _blocking_pool(layer)
    pool.start()
    assert pool.running
    layer.send("slow", {})
    assert started.wait(WAIT), "no worker picked up the message"
    assert pool.busy == 1
    # stop with a short timeout while the consumer is blocked: not drained yet
    assert pool.stop(timeout=0.05) is False
    assert not pool.running
    release.set()
    assert pool.join(WAIT) is True
    assert finished.is_set()
    assert layer.receive(["done"]) == ("done", {"ok": True}), "in-flight consumer's reply lost"
    # stopped workers take no more messages
    layer.send("slow", {"late": True})
    assert layer.receive(["slow"]) == ("slow", {"late": True})


def test_worker_pool_validates_and_starts_once(layer):
    router = Router([route("a", reply)])
    with pytest.raises(ValueError, match="positive int"):
        WorkerPool(layer, router, threads=0)
    pool = WorkerPool(layer, router, threads=1)
    pool.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            pool.start()
    finally:
        assert pool.stop(WAIT)


def test_graceful_shutdown_signal_handler_drains(layer):
    """What runworker does on SIGTERM, in-process: first signal -> drain -> True."""
    pool, started, release, finished = _blocking_pool(layer, threads=1)
    shutdown = GracefulShutdown(pool, drain_timeout=WAIT)
    pool.start()
    layer.send("slow", {})
    assert started.wait(WAIT)
    shutdown(signal.SIGTERM, None)  # as the signal module would call it
    assert shutdown.requested.is_set()
    threading.Timer(0.05, release.set).start()  # the consumer finishes during the drain
    assert shutdown.wait() is True
    assert finished.is_set()
    with pytest.raises(SystemExit) as exc:
        shutdown(signal.SIGINT, None)  # a second signal gives up waiting
    assert exc.value.code == 1


def test_worker_survives_a_failing_layer_receive(layer, caplog):
    """A broken layer (say, Redis restarting) is logged and retried, not fatal."""
    ran = threading.Event()
    router = Router([route("a", lambda m: ran.set())])
    worker = Worker(layer, router)
    worker.error_backoff = 0.01
    real_receive = layer.receive
    failures = [ConnectionError("layer down")]

    def flaky_receive(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real_receive(*args, **kwargs)

    layer.receive = flaky_receive
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        layer.send("a", {})
        assert ran.wait(WAIT), "worker did not recover from a failed receive"
    finally:
        worker.stop()
        thread.join(WAIT)
    assert "channel layer receive failed" in caplog.text and "layer down" in caplog.text


def test_channel_layers_mapping_as_in_1x():
    from django.core.exceptions import ImproperlyConfigured

    from chanlite import channel_layers
    from chanlite.asgi import ChannelLayerWrapper, InvalidChannelLayerError
    from chanlite.layers import get_channel_layer

    assert "default" in list(channel_layers)
    wrapper = channel_layers["default"]
    assert isinstance(wrapper, ChannelLayerWrapper) and wrapper.alias == "default"
    assert wrapper.channel_layer is get_channel_layer("default")
    assert wrapper.send == get_channel_layer("default").send  # the layer API passes through
    with pytest.raises(ImproperlyConfigured, match="no channel layer 'nope'"):
        channel_layers["nope"]
    with pytest.raises(InvalidChannelLayerError):  # 1.x's name, a ValueError too
        channel_layers["nope"]


@pytest.mark.django_db
def test_db_hygiene_disabled_is_reentrant():
    from django.db import close_old_connections

    from chanlite.signals import db_hygiene_disabled

    def connected():
        live = consumer_finished._live_receivers(None)  # (sync, async) from Django 5.0
        return close_old_connections in (live[0] if isinstance(live, tuple) else live)

    assert connected()
    with db_hygiene_disabled():
        with db_hygiene_disabled():
            assert not connected()
        assert not connected(), "inner exit reconnected the handler"
    assert connected()


def test_worker_accepts_a_routing_list_or_dotted_path(layer):
    assert Worker(layer, [route("a", reply)]).channels == ["a"]
    pool = WorkerPool(layer, "tests.model.routing_fixtures.app_routing", threads=1)
    assert pool.channels == ["websocket.connect"]


def test_worker_takes_1x_signature_and_the_alias_routing(layer, settings):
    from chanlite.routing import reset_routers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
                                           "ROUTING": "tests.model.routing_fixtures.app_routing"}}
    reset_routers()
    try:
        layer.alias = "default"
        worker = Worker(layer, None, 3, False, None, None)
        assert worker.channels == ["websocket.connect"]  # ROUTING of the layer's alias
        assert worker.message_retries == 3 and worker.signal_handlers is False
        keyword = Worker(layer, router=Router([route("kw", reply)]))
        assert keyword.channels == ["kw"]
        with pytest.raises(ValueError, match="message_retries"):
            Worker(layer, message_retries=-1)
    finally:
        reset_routers()


def test_sigterm_stops_a_worker_run_on_the_main_thread(layer):
    """signal_handlers=True: SIGTERM ends run() (the current consumer would
    finish first) and the previous handler is back afterwards."""
    from chanlite.signals import worker_ready

    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM)
    worker = Worker(layer, router=Router([route("a", reply)]))
    worker.receive_timeout = 3600  # only the signal can end this run in time

    def on_ready(sender, worker, **kw):
        signal.raise_signal(signal.SIGTERM)

    worker_ready.connect(on_ready)
    try:
        worker.run()  # returns only because the handler stopped it
    finally:
        worker_ready.disconnect(on_ready)
    assert worker.termed
    assert signal.getsignal(signal.SIGTERM) is before


def test_callback_sees_each_dispatched_message(layer):
    seen = []
    worker = Worker(layer, lambda channel, message: seen.append((channel, message["n"])),
                    router=Router([route("a", lambda m: None)]))
    layer.send("a", {"n": 1})
    worker.handle(*layer.receive(["a"]))
    assert seen == [("a", 1)]
