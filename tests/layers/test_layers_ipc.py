"""The POSIX shared-memory layer in one process: semantics, limits, lifecycle,
and atomicity (a process killed at every line of an operation).

Cross-process behaviour (blocking wake-ups, CPU use, many processes, the
SIGKILL chaos test) is in ``test_layers_ipc_procs.py``.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import struct
import sys
import threading

import posix_ipc
import pytest

import chanlite.layers
from chanlite.layers._ipc_layout import H_FLUSHING, WORD2
from chanlite.layers._ipc_store import name_key
from chanlite.layers.ipc import (
    IPCChannelLayer,
    IPCError,
    IPCFormatError,
    IPCMemoryFull,
)
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing import eventually
from chanlite.testing.clock import FakeClock

from .ipc_helpers import SMALL, ReplayClock, leftovers, unique_prefix


def test_basic_send_receive_and_process_specific(make_ipc):
    layer = make_ipc()
    layer.send("a", {"n": 1, "b": b"\x00\xff", "s": "é✓"})
    layer.send("a", {"n": 2})
    layer.send("p!x", {"n": 3})
    assert layer.receive(["a"]) == ("a", {"n": 1, "b": b"\x00\xff", "s": "é✓"})
    assert layer.receive(["p!"]) == ("p!x", {"n": 3})
    assert layer.receive(["a"]) == ("a", {"n": 2})
    assert layer.receive(["a", "p!"]) == (None, None)
    assert layer.check()["messages"] == 0


def test_capacity_expiry_and_statistics(make_ipc):
    clock = FakeClock()
    layer = make_ipc(clock=clock, capacity=3, expiry=10, channel_capacity={"big*": 5})
    for i in range(3):
        layer.send("c", {"i": i})
    with pytest.raises(layer.ChannelFull, match="capacity"):
        layer.send("c", {"i": 3})
    assert layer.channel_statistics("c")["channel_full_count"] == 1
    for i in range(5):
        layer.send("bigone", {"i": i})
    with pytest.raises(layer.ChannelFull):
        layer.send("bigone", {})
    assert layer.global_statistics() == {"messages_pending": 8, "channel_full_count": 2}
    clock.advance(4)
    assert layer.channel_statistics("c")["messages_max_age"] == pytest.approx(4)
    clock.advance(6)  # now every message has expired: room again, nothing delivered
    layer.send("c", {"i": "new"})
    assert layer.receive(["c"]) == ("c", {"i": "new"})
    assert layer.receive(["bigone"]) == (None, None)
    assert layer.global_statistics()["messages_pending"] == 0
    layer.check()


def test_groups(make_ipc):
    clock = FakeClock()
    layer = make_ipc(clock=clock, group_expiry=100, capacity=1)
    layer.group_add("g", "a")
    layer.group_add("g", "p!1")
    clock.advance(50)
    layer.group_add("g", "b")
    layer.group_add("g", "a")  # re-adding refreshes and moves it to the end
    assert layer.group_channels("g") == ["p!1", "b", "a"]
    layer.send("b", {"full": True})
    layer.send_group("g", {"hi": 1})  # b is full: skipped, not an error
    assert layer.receive(["a"]) == ("a", {"hi": 1})
    assert layer.receive(["p!"]) == ("p!1", {"hi": 1})
    assert layer.receive(["b"]) == ("b", {"full": True})
    clock.advance(60)  # p!1 and b joined 110 and 60 s ago... p!1 expired
    assert layer.group_channels("g") == ["b", "a"]
    layer.group_discard("g", "b")
    layer.group_discard("g", "nobody")
    assert layer.group_channels("g") == ["a"]
    layer.group_discard("g", "a")
    assert layer.group_channels("g") == []
    assert layer.check() == {"messages": 0, "members": 0, "blocks": layer.check()["blocks"]}


def test_flush_empties_everything(make_ipc):
    layer = make_ipc(capacity=1)
    layer.send("a", {})
    with pytest.raises(layer.ChannelFull):
        layer.send("a", {})
    layer.group_add("g", "a")
    layer.flush()
    assert layer.receive(["a"]) == (None, None)
    assert layer.group_channels("g") == []
    assert layer.global_statistics() == {"messages_pending": 0, "channel_full_count": 0}
    assert layer.check()["messages"] == 0


def test_same_prefix_shares_and_other_prefix_is_isolated(make_ipc):
    one, two = make_ipc(), make_ipc()
    other = make_ipc(prefix=unique_prefix())
    try:
        one.send("a", {"x": 1})
        other.send("a", {"x": 2})
        assert two.receive(["a"]) == ("a", {"x": 1})
        assert two.receive(["a"]) == (None, None)
        assert other.receive(["a"]) == ("a", {"x": 2})
    finally:
        other.remove()
        assert leftovers(other.prefix) == []


def test_large_messages_and_memory_full(make_ipc):
    layer = make_ipc(capacity=1000, max_message_size=1 << 20)
    big = {"d": b"x" * ((1 << 20) - 100)}
    layer.send("big", big)
    assert layer.receive(["big"]) == ("big", big)
    chunk = {"d": os.urandom(200_000)}
    sent = 0
    with pytest.raises(IPCMemoryFull, match="raise 'memory'") as info:
        for _ in range(100):
            layer.send("fill", chunk)
            sent += 1
    assert isinstance(info.value, layer.ChannelFull)
    assert 5 < sent < 100
    layer.check()
    for _ in range(sent):  # everything queued before the refusal is intact
        assert layer.receive(["fill"]) == ("fill", chunk)
    layer.send("big", big)  # freed memory coalesced back into big blocks
    assert layer.receive(["big"]) == ("big", big)
    assert layer.check()["messages"] == 0


def test_too_many_channels_names_the_setting(make_ipc):
    layer = make_ipc(max_channels=10)
    for i in range(10):  # exactly what was asked, not the table's rounded-up room
        layer.send(f"c{i}", {})
    with pytest.raises(IPCMemoryFull, match="max_channels"):
        layer.send("one-more", {})
    layer.check()


def test_settings_are_validated(ipc_prefix):
    with pytest.raises(ValueError, match="prefix"):
        IPCChannelLayer(prefix="bad/name")
    with pytest.raises(ValueError, match="prefix"):
        IPCChannelLayer(prefix="a.b")
    with pytest.raises(ValueError, match="memory"):
        IPCChannelLayer(prefix=ipc_prefix, memory=1000)
    with pytest.raises(ValueError, match="max_channels"):
        IPCChannelLayer(prefix=ipc_prefix, max_channels=0)
    with pytest.raises(ValueError, match="max_message_size"):
        IPCChannelLayer(prefix=ipc_prefix, **{**SMALL, "memory": 2 << 20},
                        max_message_size=4 << 20)


def _patch_header(prefix: str, offset: int, data: bytes) -> None:
    shm = posix_ipc.SharedMemory(f"/chanlite.{prefix}")
    mm = mmap.mmap(shm.fd, shm.size)
    mm[offset : offset + len(data)] = data
    mm.close()
    shm.close_fd()


def test_format_version_mismatch_is_a_clear_error(ipc_prefix):
    IPCChannelLayer(prefix=ipc_prefix, **SMALL).close()
    _patch_header(ipc_prefix, 8, struct.pack("<I", 999))
    with pytest.raises(IPCFormatError, match=r"v999 .* --remove"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    _patch_header(ipc_prefix, 0, b"SOMEJUNK")
    with pytest.raises(IPCFormatError, match="not a chanlite IPC segment"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)


def test_remove_leaves_dev_shm_clean(ipc_prefix):
    layer = IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    # A receiver that sleeps on its doorbell creates it (a short timeout
    # could run out in the spin on a busy machine, before any doorbell).
    got = []
    receiver = threading.Thread(target=lambda: got.append(layer.receive(["a"], block=True,
                                                                         timeout=30)))
    receiver.start()
    eventually(lambda: len(leftovers(ipc_prefix)) == 2,
               "the blocked receiver's doorbell to appear in /dev/shm", timeout=10)
    layer.send("a", {"n": 1})
    receiver.join(10)
    assert got == [("a", {"n": 1})]
    layer.remove()
    assert leftovers(ipc_prefix) == []
    with pytest.raises(IPCError, match="closed"):
        layer.check()


def test_memory_reservation_failure_is_clear(monkeypatch, ipc_prefix):
    def no_space(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(IPCError, match="lower 'memory'"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)


# ----------------------------------------------------- same semantics as memory


def test_random_operations_match_the_in_memory_layer(make_ipc):
    """Differential test: every result and error equals the reference layer's."""
    clock = FakeClock()
    config = {"capacity": 4, "expiry": 30, "group_expiry": 50, "clock": clock,
              "channel_capacity": {"wide": 8}}
    ipc, ref = make_ipc(**config), InMemoryChannelLayer(**config)
    rng = random.Random(1234)
    channels = ["a", "b", "wide", "p!1", "p!2", "q?x"]
    receivable = ["a", "b", "wide", "p!", "q?x"]
    for step in range(3000):
        op = rng.random()
        if op < 0.35:
            args = ("send", rng.choice(channels), {"step": step, "b": bytes([step % 256])})
        elif op < 0.65:
            args = ("receive", rng.sample(receivable, rng.randint(1, 3)))
        elif op < 0.72:
            clock.advance(rng.choice([1, 5, 20]))
            continue
        elif op < 0.78:
            args = ("group_add", rng.choice(["g", "h"]), rng.choice(channels))
        elif op < 0.82:
            args = ("group_discard", rng.choice(["g", "h"]), rng.choice(channels))
        elif op < 0.88:
            args = ("send_group", rng.choice(["g", "h"]), {"g": step})
        elif op < 0.92:
            args = ("group_channels", rng.choice(["g", "h"]))
        elif op < 0.96:
            args = ("channel_statistics", rng.choice(receivable))
        elif op < 0.99:
            args = ("global_statistics",)
        else:
            args = ("flush",)
        results = []
        for layer in (ipc, ref):
            try:
                results.append(getattr(layer, args[0])(*args[1:]))
            except Exception as exc:  # noqa: BLE001 - the error type is the result
                results.append(type(exc).__name__)
        assert results[0] == results[1], f"step {step}: {args} -> ipc {results[0]} ref {results[1]}"
    ipc.check()


# --------------------------------------------- atomicity: kill at every line

_STORE_FILES = {
    # the imported modules' files, not paths relative to the working directory
    os.path.join(os.path.dirname(os.path.abspath(chanlite.layers.__file__)), f"{name}.py")
    for name in ("_ipc_segment", "_ipc_alloc", "_ipc_store", "_ipc_groups", "_ipc_journal",
                 "_ipc_table", "_ipc_waiters", "_ipc_queues")
}


def _run_child(op, kill_at: int) -> int:
    """Fork; the child runs ``op`` and SIGKILLs itself at its ``kill_at``-th
    line inside the store modules. Returns the child's line count (when it
    was not killed) or -1 (killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        lines = 0

        def local(frame, event, arg):
            nonlocal lines
            if event == "line":
                lines += 1
                if lines == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            return local

        def tracer(frame, event, arg):
            return local if frame.f_code.co_filename in _STORE_FILES else None

        try:
            sys.settrace(tracer)
            op()
            sys.settrace(None)
            os.write(write_end, struct.pack("<q", lines))
        finally:
            os._exit(0)
    os.close(write_end)
    return _reap(pid, read_end)


def _reap(pid: int, read_end: int) -> int:
    """Wait for a forked child: -1 if it was SIGKILLed, else the count it wrote."""
    _, status = os.waitpid(pid, 0)
    data = os.read(read_end, 8)
    os.close(read_end)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return -1
    assert os.WEXITSTATUS(status) == 0 and data, "child failed"
    return struct.unpack("<q", data)[0]


def _scenarios(layer, clock):
    big = {"d": b"y" * 300_000}

    def base():
        layer.flush()
        for i in range(3):
            layer.send("q", {"i": i})
        layer.send("p!a", {"i": "p"})
        layer.send("huge", big)
        layer.group_add("g", "q")
        layer.group_add("g", "p!a")
        layer.group_add("g", "r")

    def with_empty_queue():
        base()
        layer.send("e", {"i": 0})
        layer.receive(["e"])  # "e" stays known, with nothing queued

    def full():
        base()
        for i in range(3, 6):
            layer.send("q", {"i": i})
        clock.advance(40)

    def four():  # group "g4": a, b (10 s later), p!c and d (20 s later)
        base()
        layer.group_add("g4", "a")
        clock.advance(10)
        layer.group_add("g4", "b")
        clock.advance(10)
        layer.group_add("g4", "p!c")
        layer.group_add("g4", "d")

    # groups whose entries share a home slot with "gx": deleting "gx"'s entry
    # shifts theirs back (backward-shift deletion inside one operation)
    slots = layer._store.gslots
    home = name_key("gx")[1] & (slots - 1)
    colliders = [n for n in (f"c{i}" for i in range(100_000))
                 if name_key(n)[1] & (slots - 1) == home][:2]

    def cluster():
        base()
        for group in ("gx", *colliders):
            layer.group_add(group, "m")
        layer.group_add(colliders[0], "m2")

    return {
        "send fast path": (base, lambda: layer.send("q", {"i": 9})),
        "send new channel": (base, lambda: layer.send("fresh", {"i": 9})),
        "send big (buddy split)": (base, lambda: layer.send("q", {"d": b"z" * 100_000})),
        "send dropping expired": (full, lambda: layer.send("q", {"i": 9})),
        "send onto an existing empty queue": (with_empty_queue, lambda: layer.send("e", {"i": 9})),
        "receive": (base, lambda: layer.receive(["q"])),
        "receive a queue's last message": (base, lambda: layer.receive(["p!"])),
        "receive over several queues": (base, lambda: layer.receive(["none", "huge", "q", "p!"])),
        "receive big (buddy merge)": (base, lambda: layer.receive(["huge"])),
        "receive expired": (full, lambda: (clock.advance(100), layer.receive(["q", "p!"]))),
        "group_add new": (base, lambda: layer.group_add("g", "s")),
        "group_add again": (base, lambda: layer.group_add("g", "q")),
        "group_discard": (base, lambda: layer.group_discard("g", "p!a")),
        "send_group": (base, lambda: layer.send_group("g", {"all": 1})),
        "group_channels expiring": (
            base, lambda: (clock.advance(10**6), layer.group_channels("g"))),
        "group_add again (head of 4)": (four, lambda: layer.group_add("g4", "a")),
        "group_add again (middle of 4)": (four, lambda: layer.group_add("g4", "p!c")),
        "group_add again (tail of 4)": (four, lambda: layer.group_add("g4", "d")),
        "group_add fifth": (four, lambda: layer.group_add("g4", "e")),
        "group_discard (head of 4)": (four, lambda: layer.group_discard("g4", "a")),
        "group_discard (middle of 4)": (four, lambda: layer.group_discard("g4", "b")),
        "group_discard (tail of 4)": (four, lambda: layer.group_discard("g4", "d")),
        "group_discard (absent)": (four, lambda: layer.group_discard("g4", "zz")),
        "group_discard (last member, entry shifted back)": (
            cluster, lambda: layer.group_discard("gx", "m")),
        "group_channels expiring (2 of 4)": (
            four, lambda: (clock.advance(10**5 - 5), layer.group_channels("g4"))),
        "send_group expiring (2 of 4)": (
            four, lambda: (clock.advance(10**5 - 5), layer.send_group("g4", {"all": 1}))),
        "send_group expiring (all of 4)": (
            four, lambda: (clock.advance(10**6), layer.send_group("g4", {"all": 1}))),
        "flush": (base, layer.flush),
        "blocking receive registers": (
            base, lambda: layer.receive(["none"], block=True, timeout=0)),
    }


def _live(dump: dict, now: float) -> dict:
    """The state that matters: expired messages are never delivered, so an
    operation may drop them in a step of its own."""
    queues = {}
    for name, items in dump["queues"].items():
        live = [item for item in items if item[2] > now]
        if live:
            queues[name] = live
    return {"queues": queues, "groups": dump["groups"]}


def test_killed_at_any_line_an_operation_is_all_or_nothing(make_ipc):
    """For each operation, kill a forked child at its 1st, 2nd, ... line inside
    the store modules; the state must then be exactly the before or the
    after state (up to expired messages), and every invariant must hold."""
    clock = ReplayClock()
    layer = make_ipc(clock=clock, capacity=6, expiry=30, group_expiry=10**5)
    recoveries = layer._store.recoveries
    kills = 0
    for name, (setup, op) in _scenarios(layer, clock).items():
        start = clock()
        setup()
        now = clock()
        before = _live(layer.dump(), now)
        lines = _run_child(op, kill_at=0)
        assert lines > 0, name
        after = _live(layer.dump(), now)
        # every line of short operations; ~40 spread over long ones (CI time)
        points = range(1, lines + 1) if lines <= 40 else sorted(
            {*range(1, 11), *range(lines - 9, lines + 1), *range(1, lines + 1, lines // 20)}
        )
        for kill_at in points:
            clock.replay_from(start)
            setup()
            assert _run_child(op, kill_at) == -1
            state = _live(layer.dump(), now)  # takes the lock: repairs first
            _assert_all_or_nothing(name, state, before, after, f"at line {kill_at}")
            layer.check()
            kills += 1
    assert kills > 250
    assert layer._store.recoveries > recoveries + kills // 4  # most kills were mid-operation


def _assert_all_or_nothing(name: str, state: dict, before: dict, after: dict,
                           where: str) -> None:
    """The state a kill left is the operation's before or after state (a
    ``send_group`` is a fan-out of sends: each member all-or-nothing)."""
    if name.startswith("send_group"):
        for kind in ("queues", "groups"):
            for key in {*before[kind], *after[kind], *state[kind]}:
                assert state[kind].get(key) in (before[kind].get(key), after[kind].get(key)), (
                    f"{name}: killed {where}: {kind} {key!r} is {state[kind].get(key)!r:.500}")
    else:
        assert state in (before, after), f"{name}: killed {where} left {state!r:.2000}"


def _jlen(layer) -> int:
    """The journal length a holder left (read without the lock)."""
    return WORD2.unpack_from(layer._store.mm, H_FLUSHING)[1]


def test_killed_during_recovery_the_next_holder_still_repairs(make_ipc):
    """Kill a child mid-operation (its journal non-empty), then kill the
    process that repairs it at each line of the repair (lock, rollback):
    the next holder must still restore exactly the state before the
    operation, with every invariant (rollback is idempotent)."""
    clock = ReplayClock()
    layer = make_ipc(clock=clock, capacity=6, expiry=30, group_expiry=10**5)
    scenarios = _scenarios(layer, clock)
    kills = 0
    for name in ("group_add again (head of 4)", "group_add again (tail of 4)",
                 "group_add fifth", "group_discard (middle of 4)",
                 "group_discard (last member, entry shifted back)",
                 "group_channels expiring (2 of 4)", "send fast path", "receive"):
        setup, op = scenarios[name]
        start = clock()
        setup()
        now = clock()
        before = _live(layer.dump(), now)
        lines = _run_child(op, kill_at=0)
        # the latest line of the operation at which a kill leaves the most to undo
        best, first = 0, 0
        for kill_at in range(lines, 0, -1):
            clock.replay_from(start)
            setup()
            assert _run_child(op, kill_at) == -1
            left = _jlen(layer)
            layer.dump()  # repair
            if left > best:
                best, first = left, kill_at
        print(f"{name}: first kill at line {first}/{lines} leaves {best} journal bytes")
        assert best, f"{name}: no kill left a journal to roll back"

        def killed_mid_operation(start=start, setup=setup, op=op, first=first, best=best):
            clock.replay_from(start)
            setup()
            assert _run_child(op, first) == -1
            assert _jlen(layer) == best

        killed_mid_operation()
        repair = _run_child(layer.dump, kill_at=0)
        assert repair > 0 and _jlen(layer) == 0, name
        for kill_at in range(1, repair + 1):
            killed_mid_operation()
            assert _run_child(layer.dump, kill_at) == -1
            recoveries = layer._store.recoveries
            state = _live(layer.dump(), now)  # the next holder repairs (again)
            assert state == before, f"{name}: repair killed at line {kill_at} left {state!r:.2000}"
            assert _jlen(layer) == 0
            assert layer._store.recoveries in (recoveries, recoveries + 1)
            layer.check()
            kills += 1
        print(f"  repair killed at each of its {repair} lines")
    assert kills > 50


# ------------------------------- atomicity: kill inside a commit-word store


class _DieWhenConverted:
    """A journal length that SIGKILLs its process when the store converts it
    to a C integer: a moment a real SIGKILL can land on, inside the store,
    which the line-by-line kills above never reach."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return self.value  # pragma: no cover - never reached


class _KillInStore:
    """Stands in for a commit word in a forked child (``Journal.word``, which
    every store of the journal length goes through, or ``Store.flushing``):
    counts the stores and hands the ``kill_at``-th one a
    :class:`_DieWhenConverted` value, then lets the real word store it."""

    def __init__(self, word, kill_at: int) -> None:
        self.word = word
        self.kill_at = kill_at
        self.stores = 0

    def __getitem__(self, index):
        return self.word[index]

    def __setitem__(self, index, value) -> None:
        self.stores += 1
        self.word[index] = _DieWhenConverted(value) if self.stores == self.kill_at else value


def _run_child_killed_in_store(layer, op, kill_at: int, which: str = "length") -> int:
    """Fork; the child runs ``op`` and dies inside its ``kill_at``-th store of
    the journal length (``which="flag"``: of the flush flag). Returns the
    child's store count (not killed) or -1."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        owner, attr = ((layer._store.journal, "word") if which == "length"
                       else (layer._store, "flushing"))
        word = _KillInStore(getattr(owner, attr), kill_at)
        setattr(owner, attr, word)
        try:
            op()
            os.write(write_end, struct.pack("<q", word.stores))
        finally:
            os._exit(0)
    os.close(write_end)
    return _reap(pid, read_end)


def test_killed_inside_a_journal_length_store_an_operation_is_all_or_nothing(make_ipc):
    """For each operation, kill a forked child inside its 1st, 2nd, ... store
    of the journal length (every journal step and every commit): the state
    must then be exactly the before or the after state, with every invariant.

    ``struct.pack_into`` zero-fills its target before converting the value:
    a length stored that way read 0 -- "committed" -- to the next holder,
    which kept the half-done operation (the chaos test's rare "block N is
    leaked"). A store must leave the old length or the new one."""
    clock = ReplayClock()
    layer = make_ipc(clock=clock, capacity=6, expiry=30, group_expiry=10**5)
    recoveries = layer._store.recoveries
    kills = 0
    for name, (setup, op) in _scenarios(layer, clock).items():
        start = clock()
        setup()
        now = clock()
        before = _live(layer.dump(), now)
        stores = _run_child_killed_in_store(layer, op, kill_at=0)
        after = _live(layer.dump(), now)
        for kill_at in range(1, stores + 1):
            clock.replay_from(start)
            setup()
            assert _run_child_killed_in_store(layer, op, kill_at) == -1
            state = _live(layer.dump(), now)  # takes the lock: repairs first
            _assert_all_or_nothing(name, state, before, after, f"in length store {kill_at}")
            layer.check()
            kills += 1
    assert kills > 100
    assert layer._store.recoveries > recoveries + kills // 2  # most kills left a journal


def test_killed_inside_the_flush_flag_store_of_a_repair_the_flush_is_still_redone(make_ipc):
    """A flusher killed half-way leaves the flush flag set; the holder that
    redoes the flush stores the flag again first. Killed inside that store,
    it must leave the flag set (``pack_into`` zeroed it first: the next
    holder then took the half-reset segment as clean)."""
    layer = make_ipc()

    def fill():
        for i in range(20):
            layer.send(f"f{i % 5}", {"i": i})
            layer.group_add("g", f"f{i % 5}")

    fill()
    lines = _run_child(layer.flush, kill_at=0)
    half_done = 0
    for kill_at in range(1, lines + 1, max(1, lines // 40)):  # ~40 of its ~500 lines
        fill()
        assert _run_child(layer.flush, kill_at) == -1
        if not WORD2.unpack_from(layer._store.mm, H_FLUSHING)[0]:
            layer.flush()  # killed before the flag was set or after it was cleared
            continue
        half_done += 1
        assert _run_child_killed_in_store(layer, layer.dump, 1, which="flag") == -1
        assert WORD2.unpack_from(layer._store.mm, H_FLUSHING)[0] == 1, (
            f"flusher killed at line {kill_at}: the flush was forgotten")
        assert layer.dump() == {"queues": {}, "groups": {}}  # the next holder redoes it
        counts = layer.check()  # every block free and listed once
        assert counts["messages"] == counts["members"] == 0
    assert half_done > 10, f"only {half_done} kills left a flush half done"


# ------------------------------------------- the format: byte for byte

#: sha256 of the segment after the scenario below (mutex, pid table and
#: journal zeroed: libc's, per-run and leftover bytes), computed with the
#: code before the storage engine was split by component (issue 15). A
#: refactor must leave it unchanged; a deliberate change of the layout, the
#: allocator's placement or the table order changes it: then bump
#: FORMAT_VERSION if an older process could misread the new bytes, and
#: update the digest.
FORMAT_DIGEST = "b4f1b6f27efcd5feb65d1dbde3d03e3b340ba1c69d8f637caca8eb49950ed683"


def test_the_segment_bytes_are_unchanged_by_refactoring(ipc_prefix):
    import hashlib

    from chanlite.layers._ipc_layout import (
        H_MUTEX,
        H_PROCS,
        HEADER_SIZE,
        JOURNAL_SIZE,
        MAX_PROCS,
        MUTEX_SIZE,
        PID,
    )

    clock = FakeClock(1000.0)
    layer = IPCChannelLayer(prefix=ipc_prefix, memory=4 << 20, max_channels=512,
                            max_groups=64, clock=clock, capacity=50, expiry=30)
    for i in range(30):
        layer.send(f"q{i % 7}", {"i": i, "pad": "x" * (i * 37)})
    layer.send("big", {"d": b"y" * 300_000})
    layer.send("r!abc", {"reply": 1})
    for g in range(5):
        for c in range(4):
            layer.group_add(f"g{g}", f"q{c}")
    layer.group_discard("g1", "q2")
    layer.send_group("g2", {"hello": 1})
    for i in range(12):
        layer.receive([f"q{i % 7}"])
    layer.receive(["big"])
    clock.advance(31)
    layer.send("q6", {"late": 1})
    layer.channel_statistics("q5")
    layer.group_channels("g3")
    with open(f"/dev/shm/chanlite.{ipc_prefix}", "rb") as f:
        data = bytearray(f.read())
    layer.close()
    data[H_MUTEX : H_MUTEX + MUTEX_SIZE] = bytes(MUTEX_SIZE)
    data[H_PROCS : H_PROCS + PID.size * MAX_PROCS] = bytes(PID.size * MAX_PROCS)
    data[HEADER_SIZE : HEADER_SIZE + JOURNAL_SIZE] = bytes(JOURNAL_SIZE)
    assert hashlib.sha256(data).hexdigest() == FORMAT_DIGEST, (
        "the segment's bytes changed: see FORMAT_DIGEST")
