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

Every block starts with an 8-byte header ``(order u8, flag u8, name_len u8,
pad, data_len u32)``; a free block keeps ``next``/``prev`` at +8/+16. Block
offsets are absolute offsets into the segment (0 means "none").
"""

from __future__ import annotations

import struct

from ._ipc_segment import H_BITMAP, H_HEADS, H_QHEADS, H_WAITERS, IPCMemoryFull, Segment

__all__ = ["Allocator", "MIN_ORDER", "QUICK_MAX_ORDER", "USED", "BUDDY_FREE", "QUICK_FREE"]

MIN_ORDER = 6  # 64-byte blocks: the 24-byte message header plus a short message
QUICK_MAX_ORDER = 16  # blocks up to 64 KiB are cached on quick lists
USED, BUDDY_FREE, QUICK_FREE = 0, 1, 2
_BUDDY_REGION = 8 + 8 * 64  # bitmap + heads

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
_BB = struct.Struct("<BB")
_BBQ = struct.Struct("<BBxxxxxxQ")  # order, flag, next (a free block's first 16 bytes)


class Allocator(Segment):
    """Heap allocation on top of the journaled segment."""

    def alloc(self, need: int) -> int:
        """Return the offset of a block of at least ``need`` bytes (header included).

        May :meth:`commit` (to drain quick lists one journaled step at a
        time), so call it only while the shared state is consistent. Raises
        :class:`IPCMemoryFull` when the heap cannot hold the block.
        """
        k = (need - 1).bit_length()
        if k < MIN_ORDER:
            k = MIN_ORDER
        mm = self.mm
        if k <= QUICK_MAX_ORDER:
            qh = H_QHEADS + 8 * k
            (q,) = _Q.unpack_from(mm, qh)
            if q:
                self.save(qh, 8)
                self.save(q, 16)
                _Q.pack_into(mm, qh, _Q.unpack_from(mm, q + 8)[0])
                _BB.pack_into(mm, q, k, USED)
                return q
        off = self._buddy_alloc(k)
        if not off:
            self.commit()
            self._drain_quick()
            off = self._buddy_alloc(k)
            if not off:
                raise IPCMemoryFull(
                    f"the IPC layer's shared memory (prefix {self.prefix!r}, {self.size} "
                    f"bytes) has no free block of {1 << k} bytes; consumers are not "
                    "keeping up or messages are large: raise 'memory' in the layer "
                    "CONFIG (then remove the old segment: manage.py chanlite_ipc --remove)"
                )
        return off

    def block_order(self, off: int) -> int:
        """The order of the block at ``off``, checked: a block lies on the
        heap's grid of its size (else the segment is corrupt, and freeing it
        would scribble over the header)."""
        k = self.mm[off]
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
            qh = H_QHEADS + 8 * k
            self.save(qh, 8)
            self.save(off, 16)
            _BBQ.pack_into(mm, off, k, QUICK_FREE, _Q.unpack_from(mm, qh)[0])
            _Q.pack_into(mm, qh, off)
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
        qh = H_QHEADS + 8 * k
        (nxt,) = _Q.unpack_from(mm, qh)
        size = 1 << k
        # the pieces lie inside the block just taken from a buddy list: rolling
        # back the buddy list makes them one free block again, so no journaling
        for piece in range(off + (1 << big) - size, off - 1, -size):
            _BBQ.pack_into(mm, piece, k, QUICK_FREE, nxt)
            nxt = piece
        self.save(qh, 8)
        _Q.pack_into(mm, qh, off)
        self.commit()
        return off

    # ------------------------------------------------------------ buddy

    def _buddy_alloc(self, k: int) -> int:
        mm = self.mm
        (bitmap,) = _Q.unpack_from(mm, H_BITMAP)
        avail = bitmap >> k << k
        if not avail:
            return 0
        j = (avail & -avail).bit_length() - 1
        (off,) = _Q.unpack_from(mm, H_HEADS + 8 * j)
        self.save(H_BITMAP, _BUDDY_REGION)
        self.save(off, 24)
        self._unlink(off, j)
        while j > k:  # the upper halves lie inside the free block: no journaling
            j -= 1
            self._push_buddy(off + (1 << j), j)
        _BB.pack_into(mm, off, k, USED)
        return off

    def _buddy_free(self, off: int, k: int) -> None:
        mm = self.mm
        self.save(H_BITMAP, _BUDDY_REGION)
        self.save(off, 24)
        heap, heapsize = self.heap, self.heapsize
        rel = off - heap
        while k < self.maxord:
            buddy = rel ^ (1 << k)
            if buddy + (1 << k) > heapsize:
                break
            boff = heap + buddy
            if mm[boff] != k or mm[boff + 1] != BUDDY_FREE:
                break
            self.save(boff, 24)
            self._unlink(boff, k)
            rel &= ~(1 << k)
            k += 1
        self._push_buddy(heap + rel, k)

    def _unlink(self, off: int, k: int) -> None:
        """Take a free block off buddy list ``k`` (the list region is saved)."""
        mm = self.mm
        nxt, prv = _QQ.unpack_from(mm, off + 8)
        if prv:
            self.save(prv, 24)
            _Q.pack_into(mm, prv + 8, nxt)
        else:
            _Q.pack_into(mm, H_HEADS + 8 * k, nxt)
        if nxt:
            self.save(nxt, 24)
            _Q.pack_into(mm, nxt + 16, prv)
        elif not prv:
            (bitmap,) = _Q.unpack_from(mm, H_BITMAP)
            _Q.pack_into(mm, H_BITMAP, bitmap & ~(1 << k))

    def _push_buddy(self, off: int, k: int, journal: bool = True) -> None:
        mm = self.mm
        head = H_HEADS + 8 * k
        (old,) = _Q.unpack_from(mm, head)
        _BB.pack_into(mm, off, k, BUDDY_FREE)
        _QQ.pack_into(mm, off + 8, old, 0)
        if old:
            if journal:
                self.save(old, 24)
            _Q.pack_into(mm, old + 16, off)
        _Q.pack_into(mm, head, off)
        (bitmap,) = _Q.unpack_from(mm, H_BITMAP)
        _Q.pack_into(mm, H_BITMAP, bitmap | (1 << k))

    def _drain_quick(self) -> None:
        """Coalesce every quick-listed block, committing after each one."""
        mm = self.mm
        for k in range(MIN_ORDER, QUICK_MAX_ORDER + 1):
            qh = H_QHEADS + 8 * k
            for _ in range((self.heapsize >> k) + 1):  # a cycle must not hang
                (q,) = _Q.unpack_from(mm, qh)
                if not q:
                    break
                self.save(qh, 8)
                self.save(q, 24)  # before its flag changes: rollback must see QUICK_FREE
                _Q.pack_into(mm, qh, _Q.unpack_from(mm, q + 8)[0])
                _BB.pack_into(mm, q, k, USED)
                self._buddy_free(q, k)
                self.commit()
            else:
                raise self.corrupt(f"quick list {k} is longer than the heap")

    def carve_heap(self) -> None:
        """Make the whole heap free: largest aligned power-of-two blocks first."""
        mm = self.mm
        mm[H_BITMAP:H_WAITERS] = bytes(H_WAITERS - H_BITMAP)
        rel = 0
        for k in range(self.maxord, MIN_ORDER - 1, -1):
            while rel + (1 << k) <= self.heapsize:
                self._push_buddy(self.heap + rel, k, journal=False)
                rel += 1 << k

    def walk_heap(self):
        """Yield ``(offset, order, flag)`` for every block (diagnostics, tests)."""
        mm = self.mm
        off, end = self.heap, self.heap + self.heapsize
        while off < end:
            k, flag = _BB.unpack_from(mm, off)
            if not MIN_ORDER <= k <= self.maxord:
                # the carve leaves a tail smaller than MIN_ORDER unused
                if end - off < (1 << MIN_ORDER):
                    return
                raise AssertionError(f"heap block at {off} has a bad order {k}")
            yield off, k, flag
            off += 1 << k
