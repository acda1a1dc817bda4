"""Groups inside the IPC segment (a component of :class:`._ipc_store.Store`).

A group is an entry in the group :class:`._ipc_table.Table` (same layout as
a queue entry) whose head and tail link a doubly linked list of member
blocks in join order (``MEMBER_TAIL`` in :mod:`._ipc_layout`: next, prev,
the time it was added, then the channel name).

Joining again moves a member to the end (as in the in-memory layer); every
operation is O(members of that group), like sending to it, journals what it
changes and commits once. The caller holds the lock.
"""

from __future__ import annotations

from typing import Any

from . import _ipc_layout as _layout
from ._ipc_alloc import Allocator
from ._ipc_journal import Journal
from ._ipc_layout import (
    B_FLAG,
    B_NAMELEN,
    B_NEXT,
    B_PREV,
    E_COUNT,
    E_HEAD,
    MEMBER_HEAD_SIZE,
    USED,
)
from ._ipc_table import Table

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
ENTRY_LIST = _layout.ENTRY_LIST
MEMBER_TAIL = _layout.MEMBER_TAIL
NEXT_PREV_ADDED = _layout.NEXT_PREV_ADDED
U32 = _layout.U32
U64 = _layout.U64
U64X2 = _layout.U64X2

__all__ = ["Groups"]

_LINK = U64.size  # one next or prev pointer


class Groups:
    """Group membership: add, discard, list (expiring old members)."""

    def __init__(self, mm: Any, table: Table, alloc: Allocator, journal: Journal) -> None:
        self.mm: Any = mm
        self.table = table
        self.alloc = alloc
        self.journal = journal
        self.corrupt = table.corrupt

    def add(self, gkey: bytes, gh: int, chan: bytes, now: float) -> None:
        """Add ``chan`` to the group (or move it to the end), added at ``now``."""
        mm = self.mm
        save = self.journal.save
        e = self.table.find(gkey, gh)
        blk = self._member(e, chan) if e > 0 else 0
        if blk:
            self._unlink_member(e, blk)
        else:
            blk = self.alloc.alloc(MEMBER_HEAD_SIZE + len(chan))  # first change of the operation
            mm[blk + MEMBER_HEAD_SIZE : blk + MEMBER_HEAD_SIZE + len(chan)] = chan
            if e < 0:
                e = self.table.insert(-e, gkey, gh)
        save(blk, MEMBER_HEAD_SIZE)
        save(e + E_HEAD, ENTRY_LIST.size)
        head, tail, count = ENTRY_LIST.unpack_from(mm, e + E_HEAD)
        MEMBER_TAIL.pack_into(mm, blk + B_FLAG, USED, len(chan), 0, 0, tail, now)
        if tail:
            save(tail + B_NEXT, _LINK)
            U64.pack_into(mm, tail + B_NEXT, blk)
        else:
            head = blk
        ENTRY_LIST.pack_into(mm, e + E_HEAD, head, blk, count + 1)
        self.journal.commit()

    def discard(self, gkey: bytes, gh: int, chan: bytes) -> None:
        """Remove ``chan`` from the group (nothing if it is not a member)."""
        e = self.table.find(gkey, gh)
        blk = self._member(e, chan) if e > 0 else 0
        if blk:
            self._unlink_member(e, blk)
            self.alloc.free(blk)
            self._forget_group_if_empty(e)
        self.journal.commit()

    def members(self, gkey: bytes, gh: int, added_after: float) -> list[str]:
        """The members added after ``added_after``; older ones are removed."""
        mm = self.mm
        e = self.table.find(gkey, gh)
        if e < 0:
            return []
        members = []
        (blk,) = U64.unpack_from(mm, e + E_HEAD)
        for _ in range(self.table.count(e)):
            if not blk:
                raise self.corrupt("a group's member list is shorter than its count")
            nxt, _, added = NEXT_PREV_ADDED.unpack_from(mm, blk + B_NEXT)
            if added <= added_after:
                self._unlink_member(e, blk)
                self.alloc.free(blk)
            else:
                start = blk + MEMBER_HEAD_SIZE
                members.append(mm[start : start + mm[blk + B_NAMELEN]].decode("ascii"))
            blk = nxt
        if blk:
            raise self.corrupt("a group's member list is longer than its count")
        self._forget_group_if_empty(e)
        self.journal.commit()
        return members

    def _member(self, e: int, chan: bytes) -> int:
        mm = self.mm
        n = len(chan)
        (blk,) = U64.unpack_from(mm, e + E_HEAD)
        for _ in range(self.table.count(e)):  # a cycle must not hang
            if not blk:
                return 0
            start = blk + MEMBER_HEAD_SIZE
            if mm[blk + B_NAMELEN] == n and mm[start : start + n] == chan:
                return int(blk)
            (blk,) = U64.unpack_from(mm, blk + B_NEXT)
        if blk:
            raise self.corrupt("a group's member list is longer than its count")
        return 0

    def _unlink_member(self, e: int, blk: int) -> None:
        mm = self.mm
        save = self.journal.save
        nxt, prv = U64X2.unpack_from(mm, blk + B_NEXT)
        save(e + E_HEAD, ENTRY_LIST.size)
        head, tail, count = ENTRY_LIST.unpack_from(mm, e + E_HEAD)
        if prv:
            save(prv + B_NEXT, _LINK)
            U64.pack_into(mm, prv + B_NEXT, nxt)
        else:
            head = nxt
        if nxt:
            save(nxt + B_PREV, _LINK)
            U64.pack_into(mm, nxt + B_PREV, prv)
        else:
            tail = prv
        ENTRY_LIST.pack_into(mm, e + E_HEAD, head, tail, count - 1)

    def _forget_group_if_empty(self, e: int) -> None:
        if not U32.unpack_from(self.mm, e + E_COUNT)[0]:
            self.table.delete(e)
