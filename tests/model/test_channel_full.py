"""A full channel, from the consumer's side (chanlite/channel.py docstring,
docs/consumers.md "When a channel is full").

* a group send skips full members and the layer logs a *count*, at most one
  line per interval (a broadcast to 10 000 stalled clients is one line, not
  10 000);
* an immediate send raises ``ChannelFull`` to the consumer;
* a deferred send waits for room - woken by the layer, not by polling on
  the in-memory layer - and is dropped (counted, logged) only after
  ``FLUSH_RETRY_TIME``.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from chanlite.channel import Channel, Group, deferred_sends
from chanlite.interval_log import IntervalLog
from chanlite.layers import ChannelFull
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing.clock import FakeClock
from property_tests.layers import LAYERS


@pytest.fixture(params=sorted(LAYERS))
def layer(request):
    entry = LAYERS[request.param]
    reason = entry.unavailable()
    if reason:
        print(f"skipping {request.param}: {reason}")
        pytest.skip(reason)
    built = entry.build(FakeClock(), channel_capacity={"full!": 1, "full?*": 1, "open!": 10})
    yield built
    entry.close(built)


def test_group_send_skips_full_members_and_logs_a_count_per_interval(layer, caplog):
    caplog.set_level(logging.WARNING, logger="chanlite.layers")
    members = ["full!a", "open!b", "full?c"]
    layer.send("full!x", {"filler": 1})
    layer.send("full?c", {"filler": 2})
    for member in members:
        layer.group_add("g", member)
    layer.send_group("g", {"n": 1})
    layer.send_group("g", {"n": 2})
    assert layer.receive(["open!"])[1] == {"n": 1}
    assert layer.receive(["open!"])[1] == {"n": 2}
    lines = [r.getMessage() for r in caplog.records if "group sends skipped" in r.getMessage()]
    # Two skipped members per send: the first send logs at once, the second
    # is counted into the next interval's line instead of a line of its own.
    assert lines == [lines[0]] and "skipped 2 full member(s)" in lines[0], lines
    assert "group 'g'" in lines[0]
    assert layer._skips.total == 4 and layer._skips.pending == 2
    layer._skips.flush()
    assert any("skipped 2 full member(s) in the last 10s" in r.getMessage()
               for r in caplog.records)


def test_interval_log_counts_between_lines():
    now = [0.0]
    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("chanlite.test.interval")
    logger.addHandler(Capture())
    logger.propagate = False
    log = IntervalLog(logger, logging.WARNING, "%d thing(s)%s; last: %s", interval=10,
                      clock=lambda: now[0])
    log.note(1, "a")
    log.note(2, "b")
    now[0] = 5
    log.note(1, "c")
    assert records == ["1 thing(s); last: a"]
    now[0] = 10.5
    log.note(1, "d")
    assert records[-1] == "4 thing(s) in the last 10s; last: d"
    log.flush()
    assert len(records) == 2 and log.total == 5


def test_an_immediate_send_to_a_full_channel_raises_to_the_consumer():
    layer = InMemoryChannelLayer(capacity=1)
    layer.send("c", {"n": 0})
    with deferred_sends():
        with pytest.raises(ChannelFull, match="'c' is full"):
            Channel("c", channel_layer=layer).send({"n": 1}, immediately=True)


def test_a_deferred_send_waits_for_room_woken_by_the_layer(monkeypatch):
    from chanlite import channel as channel_module

    # Polling every 30 s would miss the 2 s budget: only the layer's signal
    # can deliver this send in time.
    monkeypatch.setattr(channel_module, "FLUSH_RETRY_INTERVAL", 30.0)
    monkeypatch.setattr(channel_module, "FLUSH_RETRY_TIME", 2.0)
    layer = InMemoryChannelLayer(capacity=1)
    layer.send("c", {"n": 0})
    done = threading.Event()

    def consumer():
        with deferred_sends():
            Channel("c", channel_layer=layer).send({"n": 1})
        done.set()

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.1)  # let the flush find the channel full and wait
    assert not done.is_set()
    started = time.monotonic()
    assert layer.receive(["c"])[1] == {"n": 0}
    assert done.wait(1.5), "the deferred send was not woken by the receive"
    assert time.monotonic() - started < 1.0
    thread.join(1)
    assert layer.receive(["c"])[1] == {"n": 1}


def test_group_send_from_a_consumer_never_raises():
    layer = InMemoryChannelLayer(channel_capacity={"a!": 1})
    layer.send("a!x", {"filler": 1})
    Group("g", channel_layer=layer).add("a!y")
    with deferred_sends():
        Group("g", channel_layer=layer).send({"n": 1})
    assert layer.channel_statistics("a!")["channel_full_count"] == 1


def test_space_signal_fires_once_after_a_receive_or_flush(layer):
    """``call_when_space``: one call per registration, from the receive that
    took a message off that channel's queue (or from flush); a discarded
    registration never fires. Complete only on the in-memory layer."""
    calls = []
    layer.send("sig", {"n": 1})
    layer.send("sig", {"n": 2})
    complete = layer.call_when_space("sig", lambda: calls.append("sig"))
    assert complete is (type(layer) is InMemoryChannelLayer)
    layer.call_when_space("other", lambda: calls.append("other"))
    assert calls == []
    layer.receive(["sig"])
    assert calls == ["sig"]
    layer.receive(["sig"])
    assert calls == ["sig"], "one-shot"
    dropped = []
    callback = lambda: dropped.append(1)  # noqa: E731
    layer.call_when_space("full!a", callback)  # process-specific: the "full!" queue
    layer.discard_space_callback("full!b", callback)
    layer.send("full!x", {"n": 3})
    layer.receive(["full!"])
    assert dropped == []
    layer.flush()
    assert calls == ["sig", "other"]
