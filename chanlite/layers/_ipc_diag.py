"""Diagnostics of the IPC segment: a full dump, its figures and an invariant checker.

Used by the tests (after every chaos run and every simulated crash) and by
``manage.py chanlite_ipc --stats/--check``. They read the whole segment, so
they are O(size): never on a hot path. The caller holds the lock. They use
the store's public components only (its tables, allocator, waiter slots and
journal) and the names of :mod:`._ipc_layout`. They walk the tables with
the layout's names rather than the tables' per-entry methods: a repair
before a dump is traced line by line by the crash tests, and a method call
per slot would multiply the lines to kill at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _ipc_layout as _layout
from ._ipc_layout import (
    B_NEXT,
    B_PREV,
    BUDDY_FREE,
    BUDDY_HEAD,
    E_COUNT,
    E_HEAD,
    E_NAME,
    ENTRY,
    H_BITMAP,
    MEMBER_HEAD_SIZE,
    MESSAGE_HEAD_SIZE,
    MIN_ORDER,
    QUICK_FREE,
    QUICK_HEAD,
    QUICK_MAX_ORDER,
    USED,
    read_header,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
BLOCK_HEAD = _layout.BLOCK_HEAD
ENTRY_KEY = _layout.ENTRY_KEY
ENTRY_LIST = _layout.ENTRY_LIST
NEXT_EXPIRES = _layout.NEXT_EXPIRES
NEXT_PREV_ADDED = _layout.NEXT_PREV_ADDED
ORDER_FLAG = _layout.ORDER_FLAG
U32 = _layout.U32
U64 = _layout.U64

if TYPE_CHECKING:  # the store imports this module: annotations only
    from ._ipc_store import Store

__all__ = ["check", "dump", "info"]


def dump(store: Store) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Everything stored, without changing it: ``{"queues": {name: [(channel,
    data, expires)]}, "groups": {name: [(channel, added)]}}`` (tests, tools)."""
    mm = store.mm
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = {"queues": {}, "groups": {}}
    for kind, table in (("queues", store.queue_table), ("groups", store.group_table)):
        for i in range(table.slots):
            e = table.base + i * ENTRY
            h, n = ENTRY_KEY.unpack_from(mm, e)
            if not h:
                continue
            name = mm[e + E_NAME : e + E_NAME + n].decode("ascii")
            items: list[tuple[Any, ...]] = []
            (blk,) = U64.unpack_from(mm, e + E_HEAD)
            for _ in range(U32.unpack_from(mm, e + E_COUNT)[0]):  # a cycle must not hang
                if not blk:
                    raise store.corrupt(f"the list of {name!r} is shorter than its count")
                _, _, ln, dlen = BLOCK_HEAD.unpack_from(mm, blk)
                if kind == "queues":
                    nxt, expires = NEXT_EXPIRES.unpack_from(mm, blk + B_NEXT)
                    start = blk + MESSAGE_HEAD_SIZE
                    chan = mm[start : start + ln].decode("ascii") or name
                    items.append((chan, mm[start + ln : start + ln + dlen], expires))
                else:
                    nxt, _, added = NEXT_PREV_ADDED.unpack_from(mm, blk + B_NEXT)
                    start = blk + MEMBER_HEAD_SIZE
                    items.append((mm[start : start + ln].decode("ascii"), added))
                blk = nxt
            if blk:
                raise store.corrupt(f"the list of {name!r} is longer than its count")
            if items:
                out[kind][name] = items
    return out


def info(store: Store) -> dict[str, Any]:
    """Figures about the segment itself (``manage.py chanlite_ipc --stats``)."""
    header = read_header(store.mm)
    free = sum(1 << k for _, k, flag in store.alloc.walk_heap() if flag)
    return {
        "segment": store.path,
        "format_version": header.version,
        "size": header.size,
        "heap_bytes": header.heapsize,
        "heap_free_bytes": free,
        "channels": store.queue_table.used(),
        "max_channels": header.qmax,
        "groups": store.group_table.used(),
        "max_groups": header.gmax,
        "blocked_receivers": len(store.waiters.claimed()),
        "recoveries": store.journal.recoveries,
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
    for table, is_queue in ((store.queue_table, True), (store.group_table, False)):
        used = 0
        for i in range(table.slots):
            e = table.base + i * ENTRY
            h, n = ENTRY_KEY.unpack_from(mm, e)
            if not h:
                continue
            used += 1
            key = bytes(mm[e + E_NAME : e + E_NAME + n])
            assert table.find(key, h) == e, f"entry {key!r} misplaced"
            head, tail, count = ENTRY_LIST.unpack_from(mm, e + E_HEAD)
            seen, blk, last, prev = 0, head, 0, 0
            while blk:
                claim(blk, f"{'queue' if is_queue else 'group'} {key!r}")
                assert ORDER_FLAG.unpack_from(mm, blk)[1] == USED, (
                    f"block {blk} of {key!r} is marked free")
                if not is_queue:
                    assert U64.unpack_from(mm, blk + B_PREV)[0] == prev, f"bad prev in {key!r}"
                seen, last, prev = seen + 1, blk, blk
                (blk,) = U64.unpack_from(mm, blk + B_NEXT)
            assert seen == count, f"{key!r} counts {count} but links {seen}"
            assert tail == last, f"{key!r} has a wrong tail"
            if is_queue:
                messages += seen
            else:
                members += seen
        assert used == table.used(), "table use counter is wrong"
    (bitmap,) = U64.unpack_from(mm, H_BITMAP)
    for k in range(64):
        (blk,) = U64.unpack_from(mm, BUDDY_HEAD[k])
        assert bool(blk) == bool(bitmap >> k & 1), f"bitmap bit {k} is wrong"
        prev = 0
        while blk:
            claim(blk, f"buddy list {k}")
            assert ORDER_FLAG.unpack_from(mm, blk) == (k, BUDDY_FREE), f"block {blk} not free/{k}"
            assert U64.unpack_from(mm, blk + B_PREV)[0] == prev, f"bad prev on buddy list {k}"
            prev, blk = blk, U64.unpack_from(mm, blk + B_NEXT)[0]
    for k in range(MIN_ORDER, QUICK_MAX_ORDER + 1):
        (blk,) = U64.unpack_from(mm, QUICK_HEAD[k])
        while blk:
            claim(blk, f"quick list {k}")
            assert ORDER_FLAG.unpack_from(mm, blk) == (k, QUICK_FREE), (
                f"block {blk} not quick/{k}")
            (blk,) = U64.unpack_from(mm, blk + B_NEXT)
    blocks = 0
    for off, _k, _flag in store.alloc.walk_heap():
        assert off in owner, f"block {off} is leaked (in no list)"
        blocks += 1
    assert blocks == len(owner), "a listed block is not on the heap's block grid"
    return {"messages": messages, "members": members, "blocks": blocks}
