"""Rules of chanlite.layers.base, exercised on the in-memory layer with a FakeClock.

Why here and not per layer: every rule below lives in ``BaseChannelLayer``;
the property tests re-check them on every layer, these examples pin down the
exact behaviour (and the error texts) one case at a time.
"""

from __future__ import annotations

import re
import threading

import msgpack
import pytest

from chanlite.layers import ChannelFull, MessageTooLarge
from chanlite.layers.base import MAX_DROPPED, BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock


def make(clock: FakeClock, **config) -> InMemoryChannelLayer:
    return InMemoryChannelLayer(clock=clock, **config)


def fill(layer, channel: str, count: int) -> None:
    for n in range(count):
        layer.send(channel, {"n": n})


# capacity ------------------------------------------------------------------


def test_channel_full_at_capacity_and_counted(clock) -> None:
    layer = make(clock, capacity=2)
    fill(layer, "c", 2)
    with pytest.raises(ChannelFull, match="'c' is full \\(2 messages queued\\)"):
        layer.send("c", {"n": 2})
    assert layer.ChannelFull is ChannelFull and layer.MessageTooLarge is MessageTooLarge
    assert layer.channel_statistics("c")["channel_full_count"] == 1
    layer.receive(["c"])
    layer.send("c", {"n": 3})  # room again after a receive
    assert [layer.receive(["c"])[1]["n"] for _ in range(2)] == [1, 3]


def test_channel_capacity_globs_and_regexes_first_match_wins(clock) -> None:
    layer = make(
        clock,
        capacity=3,
        channel_capacity=[
            ("http.request", 1),
            (re.compile(r"http\..*"), 2),
            ("http.*", 5),  # never reached for http.*: the regex above matches first
            ("ws!", 4),
        ],
    )
    assert layer.capacity_for("http.request") == 1
    assert layer.capacity_for("http.disconnect") == 2
    assert layer.capacity_for("ws!") == 4
    assert layer.capacity_for("other") == 3
    fill(layer, "http.disconnect", 2)
    with pytest.raises(ChannelFull):
        layer.send("http.disconnect", {})
    assert layer.channel_statistics("http.request")["capacity"] == 1


def test_channel_capacity_accepts_a_dict_of_globs(clock) -> None:
    layer = make(clock, channel_capacity={"big.*": 1000, "tiny?": 1})
    assert layer.capacity_for("big.queue") == 1000
    assert layer.capacity_for("tinyA") == 1
    assert layer.capacity_for("tiny") == 100  # the default


def test_process_specific_prefixes_default_to_process_capacity(clock) -> None:
    layer = make(clock, capacity=2)
    assert layer.capacity_for("reply!") == 10_000  # a server's replies share one queue
    assert layer.capacity_for("reply") == 2
    layer = make(clock, process_capacity=7, channel_capacity={"big!": 9})
    assert (layer.capacity_for("reply!"), layer.capacity_for("big!")) == (7, 9)
    with pytest.raises(ValueError, match="process_capacity"):
        make(clock, process_capacity=0)


def test_process_specific_channels_share_their_prefix_capacity(clock) -> None:
    layer = make(clock, process_capacity=2)
    layer.send("reply!a", {})
    layer.send("reply!b", {})
    with pytest.raises(ChannelFull, match="reply!c"):
        layer.send("reply!c", {})
    layer.send("other!a", {})  # another prefix, its own queue
    stats = layer.channel_statistics("reply!")
    assert (stats["messages_pending"], stats["channel_full_count"]) == (2, 1)


def test_expired_messages_do_not_count_toward_capacity(clock) -> None:
    layer = make(clock, capacity=1, expiry=5)
    layer.send("c", {"old": True})
    clock.advance(5)
    layer.send("c", {"new": True})
    assert layer.receive(["c"]) == ("c", {"new": True})


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"capacity": 0}, "capacity must be a positive int"),
        ({"capacity": 1.5}, "capacity must be a positive int"),
        ({"capacity": True}, "capacity must be a positive int"),
        ({"expiry": 0}, "expiry must be a positive number"),
        ({"expiry": "60"}, "expiry must be a positive number"),
        ({"group_expiry": -1}, "group_expiry must be a positive number"),
        ({"max_message_size": 0}, "max_message_size must be a positive int"),
        ({"channel_capacity": {"a*": 0}}, r"channel_capacity\['a\*'\] must be a positive int"),
        ({"channel_capacity": {5: 1}}, "keys must be glob strings or compiled regexes"),
        ({"clock": 5}, "clock must be a callable"),
    ],
)
def test_bad_config_is_refused_with_the_option_name(config: dict, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        InMemoryChannelLayer(**config)


def test_bad_timeout_is_refused(clock) -> None:
    layer = make(clock)
    with pytest.raises(ValueError, match="timeout must be None or seconds"):
        layer.receive(["c"], block=True, timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        layer.receive(["c"], block=True, timeout="1")


# expiry --------------------------------------------------------------------


def test_expired_messages_are_never_delivered(clock) -> None:
    layer = make(clock, expiry=10)
    layer.send("c", {"n": 1})
    clock.advance(9.999)
    layer.send("c", {"n": 2})
    assert layer.receive(["c"]) == ("c", {"n": 1})  # short of expiry: delivered
    clock.advance(10)
    assert layer.receive(["c"]) == (None, None)  # exactly at expiry: gone
    assert layer.global_statistics()["messages_pending"] == 0


def test_default_expiry_and_group_expiry() -> None:
    layer = InMemoryChannelLayer()
    assert (layer.expiry, layer.group_expiry, layer.capacity) == (60, 86400, 100)
    assert layer.max_message_size == 1024 * 1024
    assert layer.extensions == ["groups", "flush", "statistics"]


# groups --------------------------------------------------------------------


def test_send_group_reaches_members_and_skips_full_ones(clock) -> None:
    layer = make(clock, capacity=1)
    for name in ("m1", "m2", "m3"):
        layer.group_add("room", name)
    layer.send("m2", {"already": "full"})
    layer.send_group("room", {"hi": 1})  # no ChannelFull
    assert layer.receive(["m1"]) == ("m1", {"hi": 1})
    assert layer.receive(["m2"]) == ("m2", {"already": "full"})
    assert layer.receive(["m3"]) == ("m3", {"hi": 1})
    assert layer.channel_statistics("m2")["channel_full_count"] == 1
    assert layer.global_statistics()["channel_full_count"] == 1


def test_group_members_expire_and_re_adding_refreshes(clock) -> None:
    layer = make(clock, group_expiry=100)
    layer.group_add("room", "a")
    layer.group_add("room", "b")
    clock.advance(60)
    layer.group_add("room", "a")  # refreshed, moves to the end
    assert layer.group_channels("room") == ["b", "a"]
    clock.advance(40)  # b was added 100 s ago: expired
    assert layer.group_channels("room") == ["a"]
    layer.send_group("room", {"x": 1})
    assert layer.receive(["b"]) == (None, None)
    assert layer.receive(["a"]) == ("a", {"x": 1})


def test_group_discard_and_process_specific_members(clock) -> None:
    layer = make(clock)
    layer.group_add("room", "reply!1")
    layer.group_add("room", "reply!2")
    layer.group_discard("room", "reply!1")
    layer.group_discard("room", "never-added")  # not an error
    layer.group_discard("no-such-group", "x")
    layer.send_group("room", {"x": 1})
    assert layer.receive(["reply!"]) == ("reply!2", {"x": 1})
    assert layer.receive(["reply!"]) == (None, None)
    with pytest.raises(TypeError):
        layer.group_add("room", "reply!")  # a pattern is not a member


def test_send_group_to_unknown_group_is_a_no_op(clock) -> None:
    layer = make(clock)
    layer.send_group("nobody", {"x": 1})
    assert layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 0}


# flush and statistics --------------------------------------------------------


def test_flush_removes_messages_groups_and_counters(clock) -> None:
    layer = make(clock, capacity=1)
    layer.send("c", {})
    with pytest.raises(ChannelFull):
        layer.send("c", {})
    layer.group_add("g", "c")
    layer.flush()
    assert layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 0}
    assert layer.group_channels("g") == []
    assert layer.receive(["c"]) == (None, None)


def test_statistics_keys_and_values(clock) -> None:
    layer = make(clock, capacity=5, expiry=30)
    assert layer.channel_statistics("c") == {
        "messages_pending": 0,
        "capacity": 5,
        "channel_full_count": 0,
        "messages_max_age": 0.0,
    }
    layer.send("c", {})
    clock.advance(7)
    layer.send("c", {})
    layer.send("reply!x", {})
    stats = layer.channel_statistics("c")
    assert stats["messages_pending"] == 2
    assert stats["messages_max_age"] == pytest.approx(7)
    assert layer.channel_statistics("reply!")["messages_pending"] == 1
    assert layer.global_statistics() == {"messages_pending": 3, "channel_full_count": 0}
    clock.advance(25)  # the first message (age 32) has expired
    assert layer.channel_statistics("c")["messages_max_age"] == pytest.approx(25)
    assert layer.global_statistics()["messages_pending"] == 2
    with pytest.raises(TypeError):
        layer.channel_statistics("reply!x")  # statistics name the queue, like receive


def test_repr_names_the_class() -> None:
    assert "InMemoryChannelLayer" in repr(InMemoryChannelLayer(capacity=7))


def test_blocked_receivers_counts_threads_inside_a_blocking_receive():
    """The statistic the concurrency property waits on: it rises while a
    thread blocks in ``receive(block=True)`` and falls when it returns
    (message or timeout); non-blocking receives never count."""
    import threading

    from chanlite.layers.memory import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    assert layer.blocked_receivers == 0
    layer.receive(["idle"], block=False)
    assert layer.blocked_receivers == 0
    results = []
    threads = [threading.Thread(target=lambda: results.append(layer.receive(["wake"], block=True,
                                                                            timeout=20)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    eventually(lambda: layer.blocked_receivers >= 2, "both receivers to count as blocked",
               timeout=20, interval=0.001)
    layer.send("wake", {"n": 1})
    layer.send("wake", {"n": 2})
    for thread in threads:
        thread.join(20)
    assert sorted(m["n"] for _, m in results) == [1, 2]
    assert layer.blocked_receivers == 0
    assert layer.receive(["none"], block=True, timeout=0) == (None, None)
    assert layer.blocked_receivers == 0


# --- exact errors and small promises (issue 20: mutation-testing survivors)


def test_full_and_too_large_errors_say_what_to_change():
    layer = InMemoryChannelLayer(capacity=1, max_message_size=64)
    layer.send("c", {})
    with pytest.raises(layer.ChannelFull) as full:
        layer.send("c", {})
    assert str(full.value) == (
        "channel 'c' is full (1 messages queued); consumers are not keeping up. Raise "
        "'capacity' or 'channel_capacity' in the layer CONFIG, or add workers"
    )
    with pytest.raises(layer.MessageTooLarge) as large:
        layer.send("d", {"x": b"x" * 64})
    assert str(large.value).endswith(
        "above max_message_size=64; send large payloads in chunks or raise "
        "max_message_size in the layer CONFIG"
    )


def test_configuration_errors_name_the_setting():
    with pytest.raises(ValueError, match=r"^process_capacity must be a positive int, not 0$"):
        InMemoryChannelLayer(process_capacity=0)
    with pytest.raises(TypeError, match=r"compiled regexes, not int \(5\)$"):
        InMemoryChannelLayer(channel_capacity={5: 1})


def test_receive_argument_forms():
    layer = InMemoryChannelLayer()
    layer.send("a", {"n": 1})
    assert layer.receive(("a",)) == ("a", {"n": 1})  # a one-name tuple is a sequence too
    with pytest.raises(TypeError, match=r"^receive\(\) takes a list of channel names, not str"):
        layer.receive("a")  # a one-character str is not a list of one name
    with pytest.raises(TypeError, match=r"^receive\(\) needs at least one channel name$"):
        layer.receive(())


def test_new_channel_token_and_fresh_message_age():
    layer = InMemoryChannelLayer(clock=FakeClock())
    name = layer.new_channel("reply!")
    assert len(name) == len("reply!") + 20  # ~119 bits from secrets
    layer.send(name, {})
    assert layer.channel_statistics("reply!")["messages_max_age"] == 0.0


def test_storage_hooks_get_the_clock_reading_itself_not_one_recomputed_from_expires():
    # 0.1 + 0.2 - 0.2 is not 0.1 in floating point: a hook that recomputed
    # ``now`` from ``expires`` would see another instant than the rules did.
    assert (0.1 + 0.2) - 0.2 != 0.1
    seen = []

    class Recording(InMemoryChannelLayer):
        def _push(self, queue, channel, data, expires, capacity, now):
            seen.append(("push", now, expires))
            return super()._push(queue, channel, data, expires, capacity, now)

        def _push_many(self, channels, data, expires, now):
            seen.append(("push_many", now, expires))
            return super()._push_many(channels, data, expires, now)

    layer = Recording(clock=lambda: 0.1, expiry=0.2)
    layer.send("a", {"n": 1})
    layer.group_add("g", "b")
    layer.send_group("g", {"n": 2})
    assert seen == [("push", 0.1, 0.1 + 0.2), ("push_many", 0.1, 0.1 + 0.2)]
    assert layer.receive(["a", "b"]) == ("a", {"n": 1})
    assert layer.receive(["a", "b"]) == ("b", {"n": 2})


class _DefaultGroupDelivery(InMemoryChannelLayer):
    """A third-party layer that implements only ``_push``: group sends go
    through the base class's default ``_push_many``."""

    _push_many = BaseChannelLayer._push_many


def test_the_default_push_many_delivers_to_members_with_room_and_counts_the_rest(caplog):
    clock = FakeClock()
    layer = _DefaultGroupDelivery(expiry=60, clock=clock, capacity=5,
                                  channel_capacity={"full": 1, "p!": 1})
    layer.send("full", {"old": 1})
    layer.send("p!y", {"old": 2})  # "p!x" shares the queue "p!" and its capacity of 1
    for member in ("a", "b", "full", "p!x", "q!z"):
        layer.group_add("g", member)
    layer.send_group("g", {"n": 1})
    assert layer.receive(["full"]) == ("full", {"old": 1})
    assert layer.receive(["p!"]) == ("p!y", {"old": 2})
    assert layer.receive(["full", "p!"]) == (None, None)  # both members were skipped
    assert layer.channel_statistics("full")["channel_full_count"] == 1
    assert layer.channel_statistics("p!")["channel_full_count"] == 1
    assert caplog.messages[-1].count("group 'g', 2 of 5") == 1
    assert layer.receive(["q!"]) == ("q!z", {"n": 1})  # a process-specific member, by name
    clock.advance(59.5)
    assert layer.receive(["a"]) == ("a", {"n": 1})  # sent with the layer's expiry...
    clock.advance(0.5)
    assert layer.channel_statistics("b")["messages_pending"] == 0  # ...and gone at it


def _forge(layer, channel: str, data: bytes) -> None:
    """Put ``data`` in ``channel``'s queue as it is, as a forger writing to the
    store would (the memory layer's storage hook, past the codec)."""
    now = layer.clock()
    assert layer._push(channel, channel, data, now + 60, 1000, now)


def test_forged_entries_are_dropped_with_a_log_line_each(caplog):
    layer = InMemoryChannelLayer(capacity=1000)
    _forge(layer, "f", msgpack.packb([1, 2]))
    _forge(layer, "f", b"\xc1")  # never valid msgpack
    layer.send("f", {"real": 1})
    assert layer.receive(["f"]) == ("f", {"real": 1})
    first, second = caplog.messages
    assert first == f"{layer!r}: dropped an entry on channel 'f' that is a list, not a dict"
    assert second.startswith(
        f"{layer!r}: dropped an entry on channel 'f' that is undecodable (FormatError: ")


def test_a_receive_gives_up_after_max_dropped_forged_entries_in_a_row(caplog):
    layer = InMemoryChannelLayer(capacity=1000)
    for _ in range(MAX_DROPPED + 1):
        _forge(layer, "f", b"\xc1")
    layer.send("f", {"real": 1})
    assert layer.receive(["f"]) == (None, None)
    assert caplog.messages[-1] == (
        f"{layer!r}: {MAX_DROPPED + 1} undecodable entries in a row; giving up this receive")
    assert len(caplog.messages) == MAX_DROPPED + 2  # one line per entry, then the giving up
    assert layer.receive(["f"]) == ("f", {"real": 1})  # the next receive goes on


def test_a_blocking_receive_that_drops_a_forged_entry_waits_out_its_timeout(caplog):
    layer = InMemoryChannelLayer(capacity=1000)
    got = []
    receiver = threading.Thread(
        target=lambda: got.append(layer.receive(["f"], block=True, timeout=30)))
    receiver.start()
    eventually(lambda: layer.blocked_receivers == 1, "the receiver to block")
    _forge(layer, "f", b"\xc1")
    # Blocked again after dropping it (the count went to 0 and back to 1).
    eventually(lambda: caplog.messages and layer.blocked_receivers == 1 and not got,
               lambda: f"the receiver to block again after the drop (got {got})")
    layer.send("f", {"real": 1})
    receiver.join(10)
    assert got == [("f", {"real": 1})]


class _TimeoutSpy(InMemoryChannelLayer):
    """Records the timeout of every call of the storage hook."""

    def _receive_counted(self, queues, block, timeout):
        self.timeouts.append(timeout)
        if block and (timeout is None or timeout > 0.2):  # fail now, not after a long wait
            raise AssertionError(f"a receive with timeout=0.2 waits {timeout}")
        return super()._receive_counted(queues, block, timeout)


def test_after_dropping_a_forged_entry_a_receive_waits_only_what_is_left_of_its_timeout():
    layer = _TimeoutSpy(capacity=1000)
    layer.timeouts = []
    _forge(layer, "f", b"\xc1")
    assert layer.receive(["f"], block=True, timeout=0.2) == (None, None)
    first, after_the_drop = layer.timeouts
    assert first == 0.2 and 0.0 <= after_the_drop <= 0.2, layer.timeouts


def test_protocol_channels_have_their_own_capacity():
    layer = InMemoryChannelLayer(capacity=5)
    assert layer.capacity_for("websocket.receive") == 10_000  # the default
    assert layer.capacity_for("chat.messages") == 5
    layer = InMemoryChannelLayer(protocol_capacity=7)
    assert [layer.capacity_for(name) for name in ("http.request", "websocket.connect")] == [7, 7]
    with pytest.raises(ValueError) as excinfo:
        InMemoryChannelLayer(protocol_capacity=0)
    assert str(excinfo.value) == "protocol_capacity must be a positive int, not 0"


def test_discarding_one_space_callback_keeps_the_others():
    layer = InMemoryChannelLayer(capacity=1)
    layer.send("q", {"n": 1})
    called = []
    first, second = (lambda: called.append("first")), (lambda: called.append("second"))
    layer.call_when_space("q", first)
    layer.call_when_space("q", second)
    layer.discard_space_callback("q", first)
    assert layer.receive(["q"]) == ("q", {"n": 1})
    assert called == ["second"]


def test_a_failing_space_callback_is_logged_and_the_others_still_run(caplog):
    layer = InMemoryChannelLayer(capacity=1)
    called = []

    def broken():
        raise RuntimeError("waiter bug")
    for channel in ("q", "r"):
        layer.send(channel, {"n": 1})
        layer.call_when_space(channel, broken)
        layer.call_when_space(channel, lambda channel=channel: called.append(channel))
    assert layer.receive(["q"]) == ("q", {"n": 1})
    layer.flush()  # every remaining registration runs
    assert called == ["q", "r"]
    assert caplog.messages == ["space-available callback for 'q' failed",
                               "space-available callback failed"]
    assert all(record.exc_info[0] is RuntimeError for record in caplog.records)
