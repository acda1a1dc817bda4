"""Queues inside the IPC segment (a component of :class:`._ipc_store.Store`).

A queue is a singly linked list of message blocks, oldest first, hanging
off an entry of the queue :class:`._ipc_table.Table` (layouts in
:mod:`._ipc_layout`). Every operation is O(1) in the backlog and in the
number of channels, journals what it changes and commits once; the caller
holds the lock. A push collects in :attr:`Queues.rings` the waiters to
wake, which the store rings after unlocking.

``push`` and ``pop`` are the hot paths: each writes its journal entries as
ONE batch (``JPUSH``/``JPUSH_TAIL``/``JPOP``) when it can reuse or return
a block on a quick list, and checks the entry's home slot before probing.
"""

from __future__ import annotations

from typing import Any

from . import _ipc_layout as _layout
from ._ipc_alloc import Allocator
from ._ipc_errors import IPCMemoryFull
from ._ipc_journal import Journal
from ._ipc_layout import (
    B_DLEN,
    B_FLAG,
    B_NAMELEN,
    B_NEXT,
    E_COUNT,
    E_FULL,
    E_HASH,
    E_HEAD,
    E_LIST,
    E_NAME,
    ENTRY,
    H_PUSHES,
    H_QUSED,
    MESSAGE_HEAD_SIZE,
    MIN_ORDER,
    QUICK_FREE,
    QUICK_HEAD,
    QUICK_MAX_ORDER,
    USED,
)
from ._ipc_table import Table

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
ENTRY_BODY = _layout.ENTRY_BODY
ENTRY_KEY = _layout.ENTRY_KEY
ENTRY_LIST = _layout.ENTRY_LIST
JPOP = _layout.JPOP
JPUSH = _layout.JPUSH
JPUSH_TAIL = _layout.JPUSH_TAIL
MESSAGE = _layout.MESSAGE
MESSAGE_TAIL = _layout.MESSAGE_TAIL
NEXT_EXPIRES = _layout.NEXT_EXPIRES
QUICK_BLOCK = _layout.QUICK_BLOCK
U32 = _layout.U32
U64 = _layout.U64
WORD = _layout.WORD

__all__ = ["Queues"]

_LINK = U64.size  # one next pointer
_QUICK = QUICK_BLOCK.size  # what a quick-list change touches in a block
_JPUSH_SIZE = JPUSH.size
_JPUSH_TAIL_SIZE = JPUSH_TAIL.size
_JPOP_SIZE = JPOP.size
_LIST_SIZE = ENTRY_LIST.size
_BODY_SIZE = ENTRY_BODY.size
_ORDER_BIAS = MESSAGE_HEAD_SIZE - 1  # see message_order()


class Queues:
    """Push, pop and count messages (the caller holds the lock)."""

    #: waiter bits collected by pushes under the lock, rung after unlocking
    rings = 0

    def __init__(self, mm: Any, table: Table, alloc: Allocator, journal: Journal,
                 jbase: int) -> None:
        self.rings = 0  # an instance attribute: read after every operation
        self.mm: Any = mm
        self.table = table
        self.alloc = alloc
        self.journal = journal
        self.corrupt = table.corrupt
        # read on every operation: plain attributes, not the table's
        self.qtable, self.qslots, self.qmask = table.base, table.slots, table.mask
        self.jbase = jbase

    def pushes(self) -> int:
        """The push counter, read without the lock (a hint only)."""
        count: int = WORD.unpack_from(self.mm, H_PUSHES)[0]
        return count

    def push(
        self, qkey: bytes, qh: int, chan: bytes, data: bytes, expires: float, now: float,
        capacity: int,
    ) -> bool:
        """Append a message unless ``capacity`` unexpired ones are queued."""
        mm = self.mm
        journal = self.journal
        # the entry's home slot first (no probing needed almost always)
        e = self.qtable + (qh & self.qmask) * ENTRY
        if ENTRY_KEY.unpack_from(mm, e) != (qh, len(qkey)) or (
                mm[e + E_NAME : e + E_NAME + len(qkey)] != qkey):
            e = self.table.find(qkey, qh)
        n, dlen = len(chan), len(data)
        k = (_ORDER_BIAS + n + dlen).bit_length()  # message_order(n, dlen), inlined
        if e > 0 and MIN_ORDER <= k <= QUICK_MAX_ORDER:
            head, tail, count, full, m0, m1 = ENTRY_BODY.unpack_from(mm, e + E_LIST)
            qhoff = QUICK_HEAD[k]
            (blk,) = U64.unpack_from(mm, qhoff)
            if not blk and count < capacity:
                blk = self.alloc.refill_quick(k)
            if blk and count < capacity:
                # The hot path, with its journal written in one batch: the
                # quick-list head, the reused block, the entry, the old tail.
                jlen = journal.jlen
                j = self.jbase + jlen
                if tail:
                    tail_next = tail + B_NEXT
                    JPUSH_TAIL.pack_into(
                        mm, j, qhoff, _LINK, blk, blk, _QUICK, mm[blk : blk + _QUICK],
                        e + E_LIST, _BODY_SIZE, head, tail, count, full, m0, m1,
                        tail_next, _LINK, mm[tail_next : tail_next + _LINK])
                    jlen = journal.jlen = jlen + _JPUSH_TAIL_SIZE
                else:
                    JPUSH.pack_into(
                        mm, j, qhoff, _LINK, blk, blk, _QUICK, mm[blk : blk + _QUICK],
                        e + E_LIST, _BODY_SIZE, head, tail, count, full, m0, m1)
                    jlen = journal.jlen = jlen + _JPUSH_SIZE
                journal.word[0] = jlen  # the batch exists from this store on
                U64.pack_into(mm, qhoff, U64.unpack_from(mm, blk + B_NEXT)[0])
                MESSAGE.pack_into(mm, blk, k, USED, n, dlen, 0, expires)
                start = blk + MESSAGE_HEAD_SIZE
                if n:
                    mm[start : start + n] = chan
                    start += n
                mm[start : start + dlen] = data
                if tail:
                    U64.pack_into(mm, tail + B_NEXT, blk)
                else:
                    head = blk
                ENTRY_BODY.pack_into(mm, e + E_LIST, head, blk, count + 1, full, 0, 0)
                if m0 or m1:
                    self.rings |= m0 | (m1 << 64)  # rung after unlocking
                journal.word[0] = 0
                journal.jlen = 0
                WORD.pack_into(mm, H_PUSHES, WORD.unpack_from(mm, H_PUSHES)[0] + 1)
                return True
        if e > 0:
            count = U32.unpack_from(mm, e + E_COUNT)[0]
            if count >= capacity and self._drop_expired(e, now) >= capacity:
                journal.save(e + E_FULL, U32.size)
                U32.pack_into(mm, e + E_FULL, U32.unpack_from(mm, e + E_FULL)[0] + 1)
                journal.commit()
                return False
            # Commit the dropped messages first: a block freed and reused in
            # one operation would be overwritten without its old bytes journaled.
            journal.commit()
        blk = self.alloc.alloc(MESSAGE_HEAD_SIZE + n + dlen)  # first change: alloc may commit
        MESSAGE_TAIL.pack_into(mm, blk + B_FLAG, USED, n, dlen, 0, expires)
        start = blk + MESSAGE_HEAD_SIZE
        if n:
            mm[start : start + n] = chan
            start += n
        mm[start : start + dlen] = data
        if e < 0:
            e = self.table.insert(-e, qkey, qh)
            head = tail = count = full = 0
            masks = 0
        else:
            journal.save(e + E_LIST, _BODY_SIZE)
            head, tail, count, full, m0, m1 = ENTRY_BODY.unpack_from(mm, e + E_LIST)
            masks = m0 | (m1 << 64)
        if tail:
            journal.save(tail + B_NEXT, _LINK)
            U64.pack_into(mm, tail + B_NEXT, blk)
        else:
            head = blk
        ENTRY_BODY.pack_into(mm, e + E_LIST, head, blk, count + 1, full, 0, 0)
        if masks:
            self.rings |= masks  # rung after unlocking
        journal.commit()
        WORD.pack_into(mm, H_PUSHES, WORD.unpack_from(mm, H_PUSHES)[0] + 1)
        return True

    def push_many(self, members: list[tuple[bytes, int, bytes, int]], data: bytes,
                  expires: float, now: float) -> int:
        """:meth:`push` to each ``(qkey, qh, chan, capacity)`` of a group send:
        a member that does not fit in the segment is skipped like a full one,
        never an error. Returns how many were skipped."""
        skipped = 0
        for qkey, qh, chan, capacity in members:
            try:
                ok = self.push(qkey, qh, chan, data, expires, now, capacity)
            except IPCMemoryFull:
                self.journal.abort()
                ok = False
            if not ok:
                skipped += 1
        return skipped

    def _drop_expired(self, e: int, now: float) -> int:
        """Free expired messages at the head of the queue; return the count left."""
        mm = self.mm
        head, tail, count = ENTRY_LIST.unpack_from(mm, e + E_HEAD)
        if not head or NEXT_EXPIRES.unpack_from(mm, head + B_NEXT)[1] > now:
            return int(count)
        self.journal.save(e + E_HEAD, _LIST_SIZE)
        while head:
            nxt, expires = NEXT_EXPIRES.unpack_from(mm, head + B_NEXT)
            if expires > now:
                break
            self.alloc.free(head)
            head = nxt
            count -= 1
        ENTRY_LIST.pack_into(mm, e + E_HEAD, head, tail if head else 0, count)
        return int(count)

    def pop(self, keys: list[tuple[bytes, int]], now: float) -> tuple[int, bytes, bytes] | None:
        """Pop the oldest unexpired message of the first non-empty queue.

        Returns ``(index in keys, channel name bytes or b"" for the queue's
        own name, data)``.
        """
        mm = self.mm
        base, mask = self.qtable, self.qmask
        journal = self.journal
        got: tuple[int, bytes, bytes] | None
        for index, (qkey, qh) in enumerate(keys):
            e = base + (qh & mask) * ENTRY  # the home slot first: rarely a probe
            if ENTRY_KEY.unpack_from(mm, e) != (qh, len(qkey)) or (
                    mm[e + E_NAME : e + E_NAME + len(qkey)] != qkey):
                e = self.table.find(qkey, qh)
                if e < 0:
                    continue
            head, tail, count, full, m0, m1 = ENTRY_BODY.unpack_from(mm, e + E_LIST)
            if head:
                k, _, n, dlen, nxt, expires = MESSAGE.unpack_from(mm, head)
                if expires > now and MIN_ORDER <= k <= QUICK_MAX_ORDER and (
                    MESSAGE_HEAD_SIZE + n + dlen <= 1 << k) and (
                    count > 1 or U32.unpack_from(mm, H_QUSED)[0] * 4 <= self.qslots  # not crowded
                ):
                    # The hot path: the entry, the quick-list head and the
                    # freed block journaled in one batch; no entry deletion.
                    start = head + MESSAGE_HEAD_SIZE
                    got = (index, mm[start : start + n] if n else b"",
                           mm[start + n : start + n + dlen])
                    qhoff = QUICK_HEAD[k]
                    (qnext,) = U64.unpack_from(mm, qhoff)
                    jlen = journal.jlen
                    JPOP.pack_into(mm, self.jbase + jlen, e + E_HEAD, _LIST_SIZE, head, tail,
                                   count, qhoff, _LINK, qnext, head, _QUICK,
                                   mm[head : head + _QUICK])
                    jlen = journal.jlen = jlen + _JPOP_SIZE
                    journal.word[0] = jlen  # the batch exists from this store on
                    ENTRY_LIST.pack_into(mm, e + E_HEAD, nxt, tail if nxt else 0, count - 1)
                    QUICK_BLOCK.pack_into(mm, head, k, QUICK_FREE, qnext)
                    U64.pack_into(mm, qhoff, head)
                    journal.word[0] = 0
                    journal.jlen = 0
                    return got
            got = None
            if count:
                journal.save(e + E_HEAD, _LIST_SIZE)
                while head:
                    nxt, expires = NEXT_EXPIRES.unpack_from(mm, head + B_NEXT)
                    count -= 1
                    if expires > now:
                        n = mm[head + B_NAMELEN]
                        (dlen,) = U32.unpack_from(mm, head + B_DLEN)
                        if MESSAGE_HEAD_SIZE + n + dlen > 1 << self.alloc.block_order(head):
                            raise self.corrupt(f"message block {head} is shorter than its contents")
                        start = head + MESSAGE_HEAD_SIZE
                        got = (index, mm[start : start + n] if n else b"",
                               mm[start + n : start + n + dlen])
                        self.alloc.free(head)
                        head = nxt
                        break
                    self.alloc.free(head)
                    head = nxt
                ENTRY_LIST.pack_into(mm, e + E_HEAD, head, tail if head else 0, count)
            if not count and not full and not (m0 | m1) and self.table.crowded():
                self.table.delete(e)
            journal.commit()
            if got is not None:
                return got
        return None

    def queue_stats(self, qkey: bytes, qh: int, now: float) -> tuple[int, float | None, int]:
        """``(unexpired messages, oldest one's expiry, times found full)`` of a queue."""
        e = self.table.find(qkey, qh)
        if e < 0:
            return 0, None, 0
        count = self._drop_expired(e, now)
        self.journal.commit()
        head, _, _, full = ENTRY_BODY.unpack_from(self.mm, e + E_LIST)[:4]
        oldest = NEXT_EXPIRES.unpack_from(self.mm, head + B_NEXT)[1] if head else None
        return count, oldest, full

    def global_stats(self, now: float) -> tuple[int, int]:
        """Scan the queue table (statistics only): O(channels), never the backlog."""
        mm = self.mm
        pending = full = 0
        for i in range(self.qslots):
            e = self.table.entry(i)
            if U32.unpack_from(mm, e + E_HASH)[0]:
                pending += self._drop_expired(e, now)
                full += U32.unpack_from(mm, e + E_FULL)[0]
        self.journal.commit()
        return pending, full


    def pop_or_watch(self, keys: list[tuple[bytes, int]], now: float,
                     watch: bool) -> tuple[int, bytes, bytes] | int | None:
        """:meth:`pop`; on a miss with ``watch``, the push counter instead."""
        got = self.pop(keys, now)
        if got is None and watch:
            return self.pushes()
        return got
