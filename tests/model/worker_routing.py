"""Routing run by the ``runworker`` subprocess in tests/model/test_runworker.py."""

from chanlite import Channel
from chanlite.routing import route

EVENTS = "worker-test.events"


def slow(message):
    """A consumer the test holds in flight: it reports that it started, then
    waits (bounded) for the test's release message before replying."""
    layer = message.channel_layer
    layer.send(EVENTS, {"started": message["n"]})
    channel, _ = layer.receive(["worker-test.release"], block=True, timeout=30)
    Channel(EVENTS, channel_layer=layer).send(
        {"done": message["n"], "released": channel is not None}
    )


def fail(message):
    """Reports (immediately) that it runs, makes a deferred send that must be
    discarded, then raises."""
    message.channel_layer.send(EVENTS, {"failing": message["n"]})
    Channel(EVENTS, channel_layer=message.channel_layer).send({"escaped": message["n"]})
    raise RuntimeError(f"task {message['n']} failed on purpose")


def echo(message):
    Channel(EVENTS, channel_layer=message.channel_layer).send({"echo": message["n"]})


channel_routing = [
    route("worker-test.slow", slow),
    route("worker-test.fail", fail),
    route("worker-test.echo", echo),
]
