"""Groups inside the IPC segment (a mixin of :class:`._ipc_store.Store`).

A group is an entry in the group table (same layout as a queue entry) whose
``head``/``tail`` link a doubly linked list of member blocks in join order::

    +0 block header (order, flag, name length)  +8 next  +16 prev
    +24 added (float, layer clock)               +32 channel name

Joining again moves a member to the end (as in the in-memory layer); every
operation is O(members of that group), like sending to it, journals what it
changes and commits once. The caller holds the lock.
"""

from __future__ import annotations

import struct

from ._ipc_alloc import USED
from ._ipc_segment import H_GUSED

__all__ = ["GroupsMixin"]

_I = struct.Struct("<I")
_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_QQD = struct.Struct("<QQd")
_MEM = struct.Struct("<BBxIQQd")  # at block+1: flag, name_len, 0, next, prev, added


class GroupsMixin:
    """Group membership operations; needs the Store's table and heap methods."""

    def group_add(self, gkey: bytes, gh: int, chan: bytes, now: float) -> None:
        mm = self.mm
        e = self._find(self.gtable, self.gslots - 1, gkey, gh)
        blk = self._member(e, chan) if e > 0 else 0
        if blk:
            self._unlink_member(e, blk)
        else:
            blk = self.alloc(32 + len(chan))  # first change of the operation
            mm[blk + 32 : blk + 32 + len(chan)] = chan
            if e < 0:
                e = self._insert(-e, H_GUSED, self.gmax, gkey, gh, "groups")
        self.save(blk, 32)
        self.save(e + 8, 20)
        head, tail, count = _QQ.unpack_from(mm, e + 8) + _I.unpack_from(mm, e + 24)
        _MEM.pack_into(mm, blk + 1, USED, len(chan), 0, 0, tail, now)
        if tail:
            self.save(tail + 8, 8)
            _Q.pack_into(mm, tail + 8, blk)
        else:
            head = blk
        _QQ.pack_into(mm, e + 8, head, blk)
        _I.pack_into(mm, e + 24, count + 1)
        self.commit()

    def group_discard(self, gkey: bytes, gh: int, chan: bytes) -> None:
        e = self._find(self.gtable, self.gslots - 1, gkey, gh)
        blk = self._member(e, chan) if e > 0 else 0
        if blk:
            self._unlink_member(e, blk)
            self.free(blk)
            self._forget_group_if_empty(e)
        self.commit()

    def group_members(self, gkey: bytes, gh: int, added_after: float) -> list[str]:
        mm = self.mm
        e = self._find(self.gtable, self.gslots - 1, gkey, gh)
        if e < 0:
            return []
        members = []
        (blk,) = _Q.unpack_from(mm, e + 8)
        for _ in range(_I.unpack_from(mm, e + 24)[0]):
            if not blk:
                raise self.corrupt("a group's member list is shorter than its count")
            nxt, _, added = _QQD.unpack_from(mm, blk + 8)
            if added <= added_after:
                self._unlink_member(e, blk)
                self.free(blk)
            else:
                members.append(mm[blk + 32 : blk + 32 + mm[blk + 2]].decode("ascii"))
            blk = nxt
        if blk:
            raise self.corrupt("a group's member list is longer than its count")
        self._forget_group_if_empty(e)
        self.commit()
        return members

    def _member(self, e: int, chan: bytes) -> int:
        mm = self.mm
        n = len(chan)
        (blk,) = _Q.unpack_from(mm, e + 8)
        for _ in range(_I.unpack_from(mm, e + 24)[0]):  # a cycle must not hang
            if not blk:
                return 0
            if mm[blk + 2] == n and mm[blk + 32 : blk + 32 + n] == chan:
                return blk
            (blk,) = _Q.unpack_from(mm, blk + 8)
        if blk:
            raise self.corrupt("a group's member list is longer than its count")
        return 0

    def _unlink_member(self, e: int, blk: int) -> None:
        mm = self.mm
        nxt, prv = _QQ.unpack_from(mm, blk + 8)
        self.save(e + 8, 20)
        head, tail, count = _QQ.unpack_from(mm, e + 8) + _I.unpack_from(mm, e + 24)
        if prv:
            self.save(prv + 8, 8)
            _Q.pack_into(mm, prv + 8, nxt)
        else:
            head = nxt
        if nxt:
            self.save(nxt + 16, 8)
            _Q.pack_into(mm, nxt + 16, prv)
        else:
            tail = prv
        _QQ.pack_into(mm, e + 8, head, tail)
        _I.pack_into(mm, e + 24, count - 1)

    def _forget_group_if_empty(self, e: int) -> None:
        if not _I.unpack_from(self.mm, e + 24)[0]:
            self._delete(self.gtable, self.gslots - 1, H_GUSED, e)
