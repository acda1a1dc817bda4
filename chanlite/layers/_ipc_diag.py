"""Diagnostics of the IPC segment: a full dump and an invariant checker.

Used by the tests (after every chaos run and every simulated crash) and by
``manage.py chanlite_ipc --stats/--check``. Both read the whole segment, so
they are O(size): never on a hot path. The caller holds the lock.
"""

from __future__ import annotations

import struct
from typing import Any

from ._ipc_alloc import BUDDY_FREE, MIN_ORDER, QUICK_FREE, QUICK_MAX_ORDER, USED
from ._ipc_layout import FORMAT_VERSION, H_WAITERS, MAX_WAITERS, segment_name
from ._ipc_segment import H_BITMAP, H_GUSED, H_HEADS, H_QHEADS, H_QUSED
from ._ipc_store import _HDRU, _HIB, _I, _NAME, _Q, _QD, _QQ, _QQD, ENTRY, Store

__all__ = ["check", "dump", "info"]


def dump(store: Store) -> dict[str, dict[str, list[tuple]]]:
    """Everything stored, without changing it: ``{"queues": {name: [(channel,
    data, expires)]}, "groups": {name: [(channel, added)]}}`` (tests, tools)."""
    mm = store.mm
    out: dict[str, dict[str, list[tuple]]] = {"queues": {}, "groups": {}}
    for kind, base, slots in (("queues", store.qtable, store.qslots),
                              ("groups", store.gtable, store.gslots)):
        for i in range(slots):
            e = base + i * ENTRY
            h, n = _HIB.unpack_from(mm, e)
            if not h:
                continue
            name = mm[e + _NAME : e + _NAME + n].decode("ascii")
            items = []
            (blk,) = _Q.unpack_from(mm, e + 8)
            for _ in range(_I.unpack_from(mm, e + 24)[0]):  # a cycle must not hang
                if not blk:
                    raise store.corrupt(f"the list of {name!r} is shorter than its count")
                _, _, ln, dlen = _HDRU.unpack_from(mm, blk)
                if kind == "queues":
                    nxt, expires = _QD.unpack_from(mm, blk + 8)
                    chan = mm[blk + 24 : blk + 24 + ln].decode("ascii") or name
                    items.append((chan, mm[blk + 24 + ln : blk + 24 + ln + dlen], expires))
                else:
                    nxt, _, added = _QQD.unpack_from(mm, blk + 8)
                    items.append((mm[blk + 32 : blk + 32 + ln].decode("ascii"), added))
                blk = nxt
            if blk:
                raise store.corrupt(f"the list of {name!r} is longer than its count")
            if items:
                out[kind][name] = items
    return out


def info(store: Store) -> dict[str, Any]:
    """Figures about the segment itself (``manage.py chanlite_ipc --stats``)."""
    mm = store.mm
    qused, gused = struct.unpack_from("<II", mm, H_QUSED)
    waiters = sum(  # claimed slots: (pid, thread id) with a thread id
        1 for slot in range(MAX_WAITERS)
        if struct.unpack_from("<II", mm, H_WAITERS + 8 * slot)[1]
    )
    free = sum(1 << k for _, k, flag in store.walk_heap() if flag)
    return {
        "segment": f"/dev/shm{segment_name(store.prefix)}",
        "format_version": FORMAT_VERSION,
        "size": store.size,
        "heap_bytes": store.heapsize,
        "heap_free_bytes": free,
        "channels": qused,
        "max_channels": store.qmax,
        "groups": gused,
        "max_groups": store.gmax,
        "blocked_receivers": waiters,
        "recoveries": store.recoveries,
    }


def check(store: Store) -> dict[str, int]:
    """Verify every invariant of the segment (tests, ``chanlite_ipc --stats``).

    Each heap block is exactly one of: on a buddy list, on a quick list,
    or in exactly one queue or group; counts and tails agree; the tables
    probe correctly. Raises ``AssertionError`` on the first violation
    (``Store.check`` turns it into :class:`IPCCorrupt`).
    """
    mm = store.mm
    owner: dict[int, str] = {}

    def claim(blk: int, what: str) -> None:
        assert blk not in owner, f"block {blk} is both in {owner[blk]} and {what}"
        owner[blk] = what

    messages = members = 0
    for base, slots, used_at, is_queue in (
        (store.qtable, store.qslots, H_QUSED, True),
        (store.gtable, store.gslots, H_GUSED, False),
    ):
        used = 0
        for i in range(slots):
            e = base + i * ENTRY
            h, n = _HIB.unpack_from(mm, e)
            if not h:
                continue
            used += 1
            key = bytes(mm[e + _NAME : e + _NAME + n])
            assert store._find(base, slots - 1, key, h) == e, f"entry {key!r} misplaced"
            head, tail, count = _QQ.unpack_from(mm, e + 8) + _I.unpack_from(mm, e + 24)
            seen, blk, last, prev = 0, head, 0, 0
            while blk:
                claim(blk, f"{'queue' if is_queue else 'group'} {key!r}")
                assert mm[blk + 1] == USED, f"block {blk} of {key!r} is marked free"
                if not is_queue:
                    assert _Q.unpack_from(mm, blk + 16)[0] == prev, f"bad prev in {key!r}"
                seen, last, prev = seen + 1, blk, blk
                (blk,) = _Q.unpack_from(mm, blk + 8)
            assert seen == count, f"{key!r} counts {count} but links {seen}"
            assert tail == last, f"{key!r} has a wrong tail"
            if is_queue:
                messages += seen
            else:
                members += seen
        assert used == _I.unpack_from(mm, used_at)[0], "table use counter is wrong"
    (bitmap,) = _Q.unpack_from(mm, H_BITMAP)
    for k in range(64):
        (blk,) = _Q.unpack_from(mm, H_HEADS + 8 * k)
        assert bool(blk) == bool(bitmap >> k & 1), f"bitmap bit {k} is wrong"
        prev = 0
        while blk:
            claim(blk, f"buddy list {k}")
            assert mm[blk] == k and mm[blk + 1] == BUDDY_FREE, f"block {blk} not free/{k}"
            assert _Q.unpack_from(mm, blk + 16)[0] == prev, f"bad prev on buddy list {k}"
            prev, blk = blk, _Q.unpack_from(mm, blk + 8)[0]
    for k in range(MIN_ORDER, QUICK_MAX_ORDER + 1):
        (blk,) = _Q.unpack_from(mm, H_QHEADS + 8 * k)
        while blk:
            claim(blk, f"quick list {k}")
            assert mm[blk] == k and mm[blk + 1] == QUICK_FREE, f"block {blk} not quick/{k}"
            (blk,) = _Q.unpack_from(mm, blk + 8)
    blocks = 0
    for off, _k, _flag in store.walk_heap():
        assert off in owner, f"block {off} is leaked (in no list)"
        blocks += 1
    assert blocks == len(owner), "a listed block is not on the heap's block grid"
    return {"messages": messages, "members": members, "blocks": blocks}
