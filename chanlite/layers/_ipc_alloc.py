"""Block allocator for the IPC segment's heap: buddy system + quick lists.

Why a buddy system: message bodies range from tens of bytes to
``max_message_size`` (1 MiB by default) and must be allocated and freed in
O(1)-ish time by any process, inside a fixed segment, with every change
journaled. Power-of-two blocks whose buddy is found by XOR need no search
and coalesce fully, so a segment once carved into small blocks can still
hold a big message later.

Why quick lists: the common pattern is "allocate a small block, free it a
moment later" (send then receive). Splitting a big block down to 128 bytes
and merging it back on every message would cost ~15 journaled steps each
way. Freed blocks up to ``QUICK_MAX_ORDER`` therefore go onto a per-order
LIFO list without coalescing (flag 2) and are reused first; only when the
buddy system cannot satisfy a request are the quick lists drained into it.

Every block starts with an 8-byte header (``BLOCK_HEAD`` in
:mod:`._ipc_layout`); a free block keeps ``next``/``prev`` at
``B_NEXT``/``B_PREV``. Block offsets are absolute offsets into the segment
(0 means "none"). The allocator is a component of the store: it changes the
heap and its lists only through the store's :class:`._ipc_journal.Journal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from . import _ipc_layout as _layout
from ._ipc_errors import IPCCorrupt, IPCMemoryFull
from ._ipc_journal import Journal
from ._ipc_layout import (
    B_NEXT,
    B_PREV,
    BUDDY_BLOCK_SIZE,
    BUDDY_FREE,
    BUDDY_HEAD,
    BUDDY_REGION,
    H_BITMAP,
    H_WAITERS,
    MIN_ORDER,
    QUICK_FREE,
    QUICK_HEAD,
    QUICK_MAX_ORDER,
    USED,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
ORDER_FLAG = _layout.ORDER_FLAG
QUICK_BLOCK = _layout.QUICK_BLOCK
U64 = _layout.U64
U64X2 = _layout.U64X2

__all__ = ["Allocator", "carve_heap"]

_HEAD = U64.size  # a list head
_QUICK = QUICK_BLOCK.size  # what a quick-list change touches in a block


class Allocator:
    """Heap allocation inside a mapped segment, every change journaled."""

    def __init__(self, mm: Any, heap: int, heapsize: int, maxord: int, journal: Journal,
                 corrupt: Callable[[str], IPCCorrupt], describe: str) -> None:
        self.mm: Any = mm
        self.heap = heap
        self.heapsize = heapsize
        self.maxord = maxord
        self.journal = journal
        self.corrupt = corrupt
        #: "prefix 'x', N bytes": names the segment in IPCMemoryFull
        self._describe = describe

    def alloc(self, need: int) -> int:
        """Return the offset of a block of at least ``need`` bytes (header included).

        May commit the journal (to drain quick lists one journaled step at a
        time), so call it only while the shared state is consistent. Raises
        :class:`IPCMemoryFull` when the heap cannot hold the block.
        """
        k = (need - 1).bit_length()
        if k < MIN_ORDER:
            k = MIN_ORDER
        mm = self.mm
        if k <= QUICK_MAX_ORDER:
            qh = QUICK_HEAD[k]
            q: int = U64.unpack_from(mm, qh)[0]
            if q:
                save = self.journal.save
                save(qh, _HEAD)
                save(q, _QUICK)
                U64.pack_into(mm, qh, U64.unpack_from(mm, q + B_NEXT)[0])
                ORDER_FLAG.pack_into(mm, q, k, USED)
                return q
        off = self._buddy_alloc(k)
        if not off:
            self.journal.commit()
            self._drain_quick()
            off = self._buddy_alloc(k)
            if not off:
                raise IPCMemoryFull(
                    f"the IPC layer's shared memory ({self._describe}) has no free block "
                    f"of {1 << k} bytes; consumers are not "
                    "keeping up or messages are large: raise 'memory' in the layer "
                    "CONFIG (then remove the old segment: manage.py chanlite_ipc --remove)"
                )
        return off

    def block_order(self, off: int) -> int:
        """The order of the block at ``off``, checked: a block lies on the
        heap's grid of its size (else the segment is corrupt, and freeing it
        would scribble over the header)."""
        k: int = self.mm[off]
        rel = off - self.heap
        if not MIN_ORDER <= k <= self.maxord or rel < 0 or rel & ((1 << k) - 1) or (
                rel + (1 << k) > self.heapsize):
            raise self.corrupt(f"no heap block of order {k} can start at {off}")
        return k

    def free(self, off: int) -> None:
        """Return the block at ``off`` to the heap."""
        mm = self.mm
        k = self.block_order(off)
        if k <= QUICK_MAX_ORDER:
            qh = QUICK_HEAD[k]
            save = self.journal.save
            save(qh, _HEAD)
            save(off, _QUICK)
            QUICK_BLOCK.pack_into(mm, off, k, QUICK_FREE, U64.unpack_from(mm, qh)[0])
            U64.pack_into(mm, qh, off)
        else:
            self._buddy_free(off, k)

    def refill_quick(self, k: int) -> int:
        """Carve one buddy block into up to 16 order-``k`` blocks on quick list ``k``.

        Sending into a growing backlog then takes the one-batch fast path 15
        times out of 16 instead of a journaled buddy split each time.
        Commits; returns the new quick-list head (0 if the heap is short).
        """
        big = min(k + 4, QUICK_MAX_ORDER)
        if big == k:
            return 0
        off = self._buddy_alloc(big)
        if not off:
            return 0
        mm = self.mm
        qh = QUICK_HEAD[k]
        (nxt,) = U64.unpack_from(mm, qh)
        size = 1 << k
        # the pieces lie inside the block just taken from a buddy list: rolling
        # back the buddy list makes them one free block again, so no journaling
        for piece in range(off + (1 << big) - size, off - 1, -size):
            QUICK_BLOCK.pack_into(mm, piece, k, QUICK_FREE, nxt)
            nxt = piece
        self.journal.save(qh, _HEAD)
        U64.pack_into(mm, qh, off)
        self.journal.commit()
        return off

    # ------------------------------------------------------------ buddy

    def _buddy_alloc(self, k: int) -> int:
        mm = self.mm
        (bitmap,) = U64.unpack_from(mm, H_BITMAP)
        avail = bitmap >> k << k
        if not avail:
            return 0
        j = (avail & -avail).bit_length() - 1
        off: int = U64.unpack_from(mm, BUDDY_HEAD[j])[0]
        self.journal.save(H_BITMAP, BUDDY_REGION)
        self.journal.save(off, BUDDY_BLOCK_SIZE)
        self._unlink(off, j)
        while j > k:  # the upper halves lie inside the free block: no journaling
            j -= 1
            self._push_buddy(off + (1 << j), j)
        ORDER_FLAG.pack_into(mm, off, k, USED)
        return off

    def _buddy_free(self, off: int, k: int) -> None:
        mm = self.mm
        save = self.journal.save
        save(H_BITMAP, BUDDY_REGION)
        save(off, BUDDY_BLOCK_SIZE)
        heap, heapsize = self.heap, self.heapsize
        rel = off - heap
        while k < self.maxord:
            buddy = rel ^ (1 << k)
            if buddy + (1 << k) > heapsize:
                break
            boff = heap + buddy
            if ORDER_FLAG.unpack_from(mm, boff) != (k, BUDDY_FREE):
                break
            save(boff, BUDDY_BLOCK_SIZE)
            self._unlink(boff, k)
            rel &= ~(1 << k)
            k += 1
        self._push_buddy(heap + rel, k)

    def _unlink(self, off: int, k: int) -> None:
        """Take a free block off buddy list ``k`` (the list region is saved)."""
        mm = self.mm
        nxt, prv = U64X2.unpack_from(mm, off + B_NEXT)
        if prv:
            self.journal.save(prv, BUDDY_BLOCK_SIZE)
            U64.pack_into(mm, prv + B_NEXT, nxt)
        else:
            U64.pack_into(mm, BUDDY_HEAD[k], nxt)
        if nxt:
            self.journal.save(nxt, BUDDY_BLOCK_SIZE)
            U64.pack_into(mm, nxt + B_PREV, prv)
        elif not prv:
            (bitmap,) = U64.unpack_from(mm, H_BITMAP)
            U64.pack_into(mm, H_BITMAP, bitmap & ~(1 << k))

    def _push_buddy(self, off: int, k: int) -> None:
        mm = self.mm
        head = BUDDY_HEAD[k]
        (old,) = U64.unpack_from(mm, head)
        ORDER_FLAG.pack_into(mm, off, k, BUDDY_FREE)
        U64X2.pack_into(mm, off + B_NEXT, old, 0)
        if old:
            self.journal.save(old, BUDDY_BLOCK_SIZE)
            U64.pack_into(mm, old + B_PREV, off)
        U64.pack_into(mm, head, off)
        (bitmap,) = U64.unpack_from(mm, H_BITMAP)
        U64.pack_into(mm, H_BITMAP, bitmap | (1 << k))

    def _drain_quick(self) -> None:
        """Coalesce every quick-listed block, committing after each one."""
        mm = self.mm
        save = self.journal.save
        for k in range(MIN_ORDER, QUICK_MAX_ORDER + 1):
            qh = QUICK_HEAD[k]
            for _ in range((self.heapsize >> k) + 1):  # a cycle must not hang
                (q,) = U64.unpack_from(mm, qh)
                if not q:
                    break
                save(qh, _HEAD)
                save(q, BUDDY_BLOCK_SIZE)  # before its flag changes: rollback must see QUICK_FREE
                U64.pack_into(mm, qh, U64.unpack_from(mm, q + B_NEXT)[0])
                ORDER_FLAG.pack_into(mm, q, k, USED)
                self._buddy_free(q, k)
                self.journal.commit()
            else:
                raise self.corrupt(f"quick list {k} is longer than the heap")

    def carve_heap(self) -> None:
        """Make the whole heap free (creation and flush)."""
        carve_heap(self.mm, self.heap, self.heapsize, self.maxord)

    def walk_heap(self) -> Iterator[tuple[int, int, int]]:
        """Yield ``(offset, order, flag)`` for every block (diagnostics, tests)."""
        mm = self.mm
        off, end = self.heap, self.heap + self.heapsize
        while off < end:
            k, flag = ORDER_FLAG.unpack_from(mm, off)
            if not MIN_ORDER <= k <= self.maxord:
                # the carve leaves a tail smaller than MIN_ORDER unused
                if end - off < (1 << MIN_ORDER):
                    return
                raise AssertionError(f"heap block at {off} has a bad order {k}")
            yield off, k, flag
            off += 1 << k


def carve_heap(mm: Any, heap: int, heapsize: int, maxord: int) -> None:
    """Make the whole heap free: largest aligned power-of-two blocks first.

    Not journaled: it runs at creation (before the segment is valid) and in
    a flush (redone whole by the next holder if its process dies).
    """
    mm[H_BITMAP:H_WAITERS] = bytes(H_WAITERS - H_BITMAP)
    bitmap = 0
    rel = 0
    for k in range(maxord, MIN_ORDER - 1, -1):
        while rel + (1 << k) <= heapsize:
            off = heap + rel
            head = BUDDY_HEAD[k]
            (old,) = U64.unpack_from(mm, head)
            ORDER_FLAG.pack_into(mm, off, k, BUDDY_FREE)
            U64X2.pack_into(mm, off + B_NEXT, old, 0)
            if old:
                U64.pack_into(mm, old + B_PREV, off)
            U64.pack_into(mm, head, off)
            bitmap |= 1 << k
            rel += 1 << k
    U64.pack_into(mm, H_BITMAP, bitmap)
