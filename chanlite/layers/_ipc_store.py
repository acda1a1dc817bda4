"""Queues, groups and waiter registrations inside the IPC segment.

Two open-addressing hash tables (linear probing, backward-shift deletion so
no tombstones pile up) map a queue or group name to a fixed-size entry::

    +0 hash u32 (0 = empty slot)   +4 name length u8
    +8 head u64  +16 tail u64  +24 count u32  +28 full count u32
    +32 waiter mask (two u64: bit i = waiter slot i waits on this queue)
    +48 name bytes

A queue is a singly linked list of message blocks, oldest first; a group a
doubly linked list of member blocks in join order (:mod:`._ipc_groups`;
:mod:`._ipc_diag` holds the dump and the invariant checker). Every operation is O(1)
in the backlog and in the number of channels (a group operation is O(its
members), like sending to it), journals what it changes, and commits once.
Caller holds the lock (:meth:`Segment.lock`).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib

import posix_ipc

from ._ipc_alloc import MIN_ORDER, QUICK_FREE, QUICK_MAX_ORDER, USED, Allocator
from ._ipc_groups import GroupsMixin
from ._ipc_segment import (
    ENTRY,
    H_FLUSHING,
    H_JLEN,
    H_PUSHES,
    H_QHEADS,
    H_QUSED,
    H_WAITERS,
    MAX_WAITERS,
    WORD,
    IPCMemoryFull,
    IPCPermissionError,
    _check_trust,
    logger,
    semaphore_name,
)

__all__ = ["ENTRY", "Store", "name_key"]

_NAME = 48
_I = struct.Struct("<I")
_Q = struct.Struct("<Q")
_II = struct.Struct("<II")
_QQ = struct.Struct("<QQ")
_ENT = struct.Struct("<QQIIQQ")  # head, tail, count, full, mask0, mask1 at +8
_HIB = struct.Struct("<IB")
_MSG = struct.Struct("<BBxIQd")  # at block+1: flag, name_len, data_len, next, expires
_QD = struct.Struct("<Qd")  # next, expires at block+8
_MEM = struct.Struct("<BBxIQQd")  # at block+1: flag, name_len, 0, next, prev, added
_QQD = struct.Struct("<QQd")
_QQI = struct.Struct("<QQI")
_QI = struct.Struct("<QI")  # journal entry header: offset, length
_HDRU = struct.Struct("<BBBxI")  # order, flag, name_len, data_len
_BMSG = struct.Struct("<BBBxIQd")  # a message block's first 24 bytes
_BBQ = struct.Struct("<BBxxxxxxQ")  # a quick-free block: order, flag, next
# The hot paths' journal batches, each written with ONE pack_into (entries of
# ``(offset u64, length u32, old bytes)``, exactly what save() would write).
# Old values already unpacked as integers are packed back with the format
# they were read with ("<Q", "<QQIIQQ", "<QQI": no padding), so the saved
# bytes are identical to a copy; block headers are copied as bytes.
#   push: quick-list head (8), reused block (16), queue entry +8 (40) [, old tail's next (8)]
_JPUSH = struct.Struct("<QIQ" "QI16s" "QIQQIIQQ")
_JPUSH_TAIL = struct.Struct("<QIQ" "QI16s" "QIQQIIQQ" "QI8s")
#   pop: queue entry +8 (20), quick-list head (8), freed block (16)
_JPOP = struct.Struct("<QIQQI" "QIQ" "QI16s")


def name_key(name: str) -> tuple[bytes, int]:
    """``(ascii bytes, non-zero hash)``: the same in every process (crc32, not hash())."""
    data = name.encode("ascii")
    return data, zlib.crc32(data) or 1


class Store(GroupsMixin, Allocator):
    """The layer's shared data structures; every method expects the lock held."""

    _bells: dict[int, posix_ipc.Semaphore | IPCPermissionError] | None = None

    def bell(self, slot: int) -> posix_ipc.Semaphore:
        """The doorbell semaphore of waiter ``slot`` (opened once per process).

        Created exclusively with the layer's ``mode``; an existing one is
        used only if this uid owns it with no wider mode (else another user
        could keep receivers awake or watch them).
        """
        bells = self._bells
        if bells is None:
            bells = self._bells = {}
        sem = bells.get(slot)
        if sem is None:
            sem = bells[slot] = self._open_bell(slot)
        if type(sem) is IPCPermissionError:
            raise sem
        return sem

    def _open_bell(self, slot: int) -> posix_ipc.Semaphore | IPCPermissionError:
        """The doorbell, or (logged once per process) why it is not trusted."""
        name = semaphore_name(self.prefix, slot)
        path = f"/dev/shm/sem.{name[1:]}"
        try:
            sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=self.mode)
            os.chmod(path, self.mode)  # the configured bits, whatever the umask
            return sem
        except posix_ipc.ExistentialError:
            pass
        try:
            sem = posix_ipc.Semaphore(name, posix_ipc.O_CREAT, mode=self.mode)
            _check_trust(os.stat(path), path, self.mode)
            return sem
        except posix_ipc.PermissionsError as exc:
            error = IPCPermissionError(f"{path} belongs to another user ({exc}); remove "
                                       "it or choose another 'prefix'")
        except IPCPermissionError as exc:
            sem.close()
            error = exc
        logger.error("%s; a receiver given this waiter slot polls every 5 ms instead", error)
        return error

    def ring(self, slot: int) -> None:
        """Wake waiter ``slot``; a dead waiter's bell just costs a spurious wake."""
        try:
            self.bell(slot).release()
        except IPCPermissionError:  # logged once; that receiver polls
            pass

    def _find(self, base: int, mask: int, key: bytes, h: int) -> int:
        """The entry of ``key``, or minus the empty slot where it would go."""
        mm = self.mm
        i = h & mask
        n = len(key)
        for _ in range(mask + 1):
            e = base + i * ENTRY
            eh, en = _HIB.unpack_from(mm, e)
            if eh == 0:
                return -e
            if eh == h and en == n and mm[e + _NAME : e + _NAME + n] == key:
                return e
            i = (i + 1) & mask
        raise self.corrupt("a hash table has no empty slot")  # it is at most 3/4 full

    def _insert(self, e: int, used_at: int, limit: int, key: bytes, h: int, what: str) -> int:
        mm = self.mm
        (used,) = _I.unpack_from(mm, used_at)
        if used >= limit:
            setting = "max_channels" if used_at == H_QUSED else "max_groups"
            raise IPCMemoryFull(
                f"the IPC layer (prefix {self.prefix!r}) already holds {used} {what}; "
                f"raise '{setting}' in the layer CONFIG (then remove the old segment: "
                "manage.py chanlite_ipc --remove)"
            )
        self.save(used_at, 4)
        _I.pack_into(mm, used_at, used + 1)
        self.save(e, 8)
        mm[e : e + ENTRY] = bytes(ENTRY)
        mm[e + _NAME : e + _NAME + len(key)] = key
        _HIB.pack_into(mm, e, h, len(key))  # the hash last: the slot is now used
        return e

    def _delete(self, base: int, mask: int, used_at: int, e: int) -> None:
        """Backward-shift deletion: later entries of the cluster move up."""
        mm = self.mm
        self.save(used_at, 4)
        _I.pack_into(mm, used_at, _I.unpack_from(mm, used_at)[0] - 1)
        i = j = (e - base) // ENTRY
        for _ in range(mask + 1):
            j = (j + 1) & mask
            ej = base + j * ENTRY
            (hj,) = _I.unpack_from(mm, ej)
            if hj == 0:
                break
            home = hj & mask
            if (i < home <= j) if i < j else (home > i or home <= j):
                continue  # j's home lies between the hole and j: it must stay
            ei = base + i * ENTRY
            self.save(ei, ENTRY)
            mm[ei : ei + ENTRY] = mm[ej : ej + ENTRY]
            i = j
        else:
            raise self.corrupt("a hash table has no empty slot")
        ei = base + i * ENTRY
        self.save(ei, 4)
        _I.pack_into(mm, ei, 0)

    # ------------------------------------------------------------ queues

    def push(
        self, qkey: bytes, qh: int, chan: bytes, data: bytes, expires: float, now: float,
        capacity: int,
    ) -> bool:
        """Append a message unless ``capacity`` unexpired ones are queued."""
        mm = self.mm
        # the entry's home slot first (no probing needed almost always)
        e = self.qtable + (qh & self.qmask) * ENTRY
        if _HIB.unpack_from(mm, e) != (qh, len(qkey)) or mm[e + _NAME : e + _NAME + len(qkey)] != qkey:
            e = self._find(self.qtable, self.qmask, qkey, qh)
        n, dlen = len(chan), len(data)
        k = (23 + n + dlen).bit_length()  # the order of a 24 + n + dlen byte block
        if e > 0 and MIN_ORDER <= k <= QUICK_MAX_ORDER:
            head, tail, count, full, m0, m1 = _ENT.unpack_from(mm, e + 8)
            qhoff = H_QHEADS + 8 * k
            (blk,) = _Q.unpack_from(mm, qhoff)
            if not blk and count < capacity:
                blk = self.refill_quick(k)
            if blk and count < capacity:
                # The hot path, with its journal written in one batch: the
                # quick-list head, the reused block, the entry, the old tail.
                j = self.jbase + self._jlen
                if tail:
                    _JPUSH_TAIL.pack_into(
                        mm, j, qhoff, 8, blk, blk, 16, mm[blk : blk + 16],
                        e + 8, 40, head, tail, count, full, m0, m1,
                        tail + 8, 8, mm[tail + 8 : tail + 16])
                    jlen = self._jlen = self._jlen + 120
                else:
                    _JPUSH.pack_into(
                        mm, j, qhoff, 8, blk, blk, 16, mm[blk : blk + 16],
                        e + 8, 40, head, tail, count, full, m0, m1)
                    jlen = self._jlen = self._jlen + 100
                WORD.pack_into(mm, H_JLEN, jlen)  # the batch exists from this store on
                _Q.pack_into(mm, qhoff, _Q.unpack_from(mm, blk + 8)[0])
                _BMSG.pack_into(mm, blk, k, USED, n, dlen, 0, expires)
                start = blk + 24
                if n:
                    mm[start : start + n] = chan
                    start += n
                mm[start : start + dlen] = data
                if tail:
                    _Q.pack_into(mm, tail + 8, blk)
                else:
                    head = blk
                _ENT.pack_into(mm, e + 8, head, blk, count + 1, full, 0, 0)
                if m0 or m1:
                    self.rings |= m0 | (m1 << 64)  # rung by the caller after unlocking
                WORD.pack_into(mm, H_JLEN, 0)
                self._jlen = 0
                WORD.pack_into(mm, H_PUSHES, WORD.unpack_from(mm, H_PUSHES)[0] + 1)
                return True
        if e > 0:
            count = _I.unpack_from(mm, e + 24)[0]
            if count >= capacity and self._drop_expired(e, now) >= capacity:
                self.save(e + 28, 4)
                _I.pack_into(mm, e + 28, _I.unpack_from(mm, e + 28)[0] + 1)
                self.commit()
                return False
            # Commit the dropped messages first: a block freed and reused in
            # one operation would be overwritten without its old bytes journaled.
            self.commit()
        blk = self.alloc(24 + n + dlen)  # before any other change: alloc may commit
        _MSG.pack_into(mm, blk + 1, USED, n, dlen, 0, expires)
        start = blk + 24
        if n:
            mm[start : start + n] = chan
            start += n
        mm[start : start + dlen] = data
        if e < 0:
            e = self._insert(-e, H_QUSED, self.qmax, qkey, qh, "channels")
            head = tail = count = full = 0
            masks = 0
        else:
            self.save(e + 8, 40)
            head, tail, count, full, m0, m1 = _ENT.unpack_from(mm, e + 8)
            masks = m0 | (m1 << 64)
        if tail:
            self.save(tail + 8, 8)
            _Q.pack_into(mm, tail + 8, blk)
        else:
            head = blk
        _ENT.pack_into(mm, e + 8, head, blk, count + 1, full, 0, 0)
        if masks:
            self.rings |= masks  # rung by the caller after unlocking
        self.commit()
        WORD.pack_into(mm, H_PUSHES, WORD.unpack_from(mm, H_PUSHES)[0] + 1)
        return True

    def push_member(
        self, qkey: bytes, qh: int, chan: bytes, data: bytes, expires: float, now: float,
        capacity: int,
    ) -> bool:
        """:meth:`push` for one member of a group send: a member that does not
        fit in the segment is skipped like a full one, never an error. Returns
        whether the message was queued (False: skipped)."""
        try:
            return bool(self.push(qkey, qh, chan, data, expires, now, capacity))
        except IPCMemoryFull:
            self.abort()
            return False

    def ring_mask(self, masks: int) -> None:
        """Ring every waiter whose bit is set in ``masks`` (call it unlocked:
        a woken receiver then finds the lock free instead of sleeping on it)."""
        while masks:
            low = masks & -masks
            self.ring(low.bit_length() - 1)
            masks ^= low

    def _drop_expired(self, e: int, now: float) -> int:
        """Free expired messages at the head of the queue; return the count left."""
        mm = self.mm
        head, tail, count = _QQ.unpack_from(mm, e + 8) + _I.unpack_from(mm, e + 24)
        if not head or _QD.unpack_from(mm, head + 8)[1] > now:
            return count
        self.save(e + 8, 20)
        while head:
            nxt, expires = _QD.unpack_from(mm, head + 8)
            if expires > now:
                break
            self.free(head)
            head = nxt
            count -= 1
        _QQ.pack_into(mm, e + 8, head, tail if head else 0)
        _I.pack_into(mm, e + 24, count)
        return count

    def pop(self, keys: list[tuple[bytes, int]], now: float) -> tuple[int, bytes, bytes] | None:
        """Pop the oldest unexpired message of the first non-empty queue.

        Returns ``(index in keys, channel name bytes or b"" for the queue's
        own name, data)``.
        """
        mm = self.mm
        base, mask = self.qtable, self.qmask
        for index, (qkey, qh) in enumerate(keys):
            e = base + (qh & mask) * ENTRY  # the home slot first: rarely a probe
            if _HIB.unpack_from(mm, e) != (qh, len(qkey)) or mm[e + _NAME : e + _NAME + len(qkey)] != qkey:
                e = self._find(base, mask, qkey, qh)
                if e < 0:
                    continue
            head, tail, count, full, m0, m1 = _ENT.unpack_from(mm, e + 8)
            if head:
                k, _, n, dlen, nxt, expires = _BMSG.unpack_from(mm, head)
                if expires > now and MIN_ORDER <= k <= QUICK_MAX_ORDER and (
                    24 + n + dlen <= 1 << k) and (
                    count > 1 or _I.unpack_from(mm, H_QUSED)[0] * 4 <= self.qslots  # not crowded
                ):
                    # The hot path: the entry, the quick-list head and the
                    # freed block journaled in one batch; no entry deletion.
                    start = head + 24
                    got = (index, mm[start : start + n] if n else b"",
                           mm[start + n : start + n + dlen])
                    qhoff = H_QHEADS + 8 * k
                    (qnext,) = _Q.unpack_from(mm, qhoff)
                    _JPOP.pack_into(mm, self.jbase + self._jlen, e + 8, 20, head, tail, count,
                                    qhoff, 8, qnext, head, 16, mm[head : head + 16])
                    jlen = self._jlen = self._jlen + 80
                    WORD.pack_into(mm, H_JLEN, jlen)  # the batch exists from this store on
                    _QQI.pack_into(mm, e + 8, nxt, tail if nxt else 0, count - 1)
                    _BBQ.pack_into(mm, head, k, QUICK_FREE, qnext)
                    _Q.pack_into(mm, qhoff, head)
                    WORD.pack_into(mm, H_JLEN, 0)
                    self._jlen = 0
                    return got
            got = None
            if count:
                self.save(e + 8, 20)
                while head:
                    nxt, expires = _QD.unpack_from(mm, head + 8)
                    count -= 1
                    if expires > now:
                        n = mm[head + 2]
                        (dlen,) = _I.unpack_from(mm, head + 4)
                        if 24 + n + dlen > 1 << self.block_order(head):
                            raise self.corrupt(f"message block {head} is shorter than its contents")
                        start = head + 24
                        got = (index, mm[start : start + n] if n else b"",
                               mm[start + n : start + n + dlen])
                        self.free(head)
                        head = nxt
                        break
                    self.free(head)
                    head = nxt
                _QQ.pack_into(mm, e + 8, head, tail if head else 0)
                _I.pack_into(mm, e + 24, count)
            if not count and not full and not (m0 | m1) and self._crowded():
                self._delete(base, mask, H_QUSED, e)
            self.commit()
            if got is not None:
                return got
        return None

    def _crowded(self) -> bool:
        """Delete empty queue entries only once a quarter of the table is used:
        below that they cost nothing, and a channel that is emptied and
        refilled all the time (the common case) keeps its entry."""
        return _I.unpack_from(self.mm, H_QUSED)[0] * 4 > self.qslots

    def queue_stats(self, qkey: bytes, qh: int, now: float) -> tuple[int, float | None, int]:
        e = self._find(self.qtable, self.qslots - 1, qkey, qh)
        if e < 0:
            return 0, None, 0
        count = self._drop_expired(e, now)
        self.commit()
        head, _, _, full = _ENT.unpack_from(self.mm, e + 8)[:4]
        oldest = _QD.unpack_from(self.mm, head + 8)[1] if head else None
        return count, oldest, full

    def global_stats(self, now: float) -> tuple[int, int]:
        """Scan the queue table (statistics only): O(channels), never the backlog."""
        mm = self.mm
        pending = full = 0
        for i in range(self.qslots):
            e = self.qtable + i * ENTRY
            if _I.unpack_from(mm, e)[0]:
                pending += self._drop_expired(e, now)
                full += _I.unpack_from(mm, e + 28)[0]
        self.commit()
        return pending, full

    # ----------------------------------------------------------- waiters

    def claim_waiter(self, held: list[int] | None = None) -> int:
        """A free waiter slot for this thread (or a dead process's), else -1.

        A slot records ``(pid, thread id)``. ``held[0]`` is set to the slot
        *before* the claim commits, so a caller interrupted at any point
        knows every slot it may hold (:meth:`release_waiter` checks whose).
        """
        mm = self.mm
        pid = os.getpid()
        dead = -1
        for slot in range(MAX_WAITERS):
            at = H_WAITERS + 8 * slot
            owner, claimed = _II.unpack_from(mm, at)
            if not claimed:
                break
            if dead < 0 and owner != pid and not _alive(owner):
                dead = slot
        else:
            if dead < 0:
                return -1
            slot = dead
        at = H_WAITERS + 8 * slot
        self.save(at, 8)
        _II.pack_into(mm, at, pid, _thread_id())
        if held is not None:
            held[0] = slot
        self.commit()
        return slot

    def release_waiter(self, slot: int, keys: list[tuple[bytes, int]],
                       held: list[int] | None = None) -> None:
        """Give ``slot`` back if this thread holds it; ``held[0]`` becomes -1
        once it is given back (after the commit: releasing twice is a no-op,
        so an interruption in between is harmless, unlike a lost release)."""
        at = H_WAITERS + 8 * slot
        if _II.unpack_from(self.mm, at) == (os.getpid(), _thread_id()):
            self.set_waiting(slot, keys, False)
            self.save(at, 8)
            _II.pack_into(self.mm, at, 0, 0)
            self.commit()
        if held is not None:
            held[0] = -1

    def set_waiting(self, slot: int, keys: list[tuple[bytes, int]], on: bool) -> None:
        """Set (or clear) waiter ``slot``'s bit on each queue, creating entries."""
        mm = self.mm
        base, mask = self.qtable, self.qslots - 1
        bit = 1 << slot
        for qkey, qh in keys:
            e = self._find(base, mask, qkey, qh)
            if e < 0:
                if not on:
                    continue
                e = self._insert(-e, H_QUSED, self.qmax, qkey, qh, "channels")
            m0, m1 = _QQ.unpack_from(mm, e + 32)
            masks = m0 | (m1 << 64)
            new = masks | bit if on else masks & ~bit
            if new != masks:
                self.save(e + 32, 16)
                _QQ.pack_into(mm, e + 32, new & 0xFFFFFFFFFFFFFFFF, new >> 64)
            if (not new and not _ENT.unpack_from(mm, e + 8)[2]
                    and not _I.unpack_from(mm, e + 28)[0] and self._crowded()):
                self._delete(base, mask, H_QUSED, e)
        self.commit()

    # ------------------------------------------------------------- flush

    def reset_heap(self) -> None:
        mm = self.mm
        mm[self.qtable : self.gtable + self.gslots * ENTRY] = bytes(
            self.gtable + self.gslots * ENTRY - self.qtable
        )
        _II.pack_into(mm, H_QUSED, 0, 0)
        self.carve_heap()

    def flush_locked(self) -> None:
        mm = self.mm
        WORD.pack_into(mm, H_FLUSHING, 1)  # a crash from here on: the next holder redoes it
        self.reset_heap()
        for slot in range(MAX_WAITERS):  # their registrations are gone: wake them
            if _II.unpack_from(mm, H_WAITERS + 8 * slot)[1]:
                self.ring(slot)
        self.commit()
        WORD.pack_into(mm, H_FLUSHING, 0)

    # ------------------------------------------------------- diagnostics

    def dump(self) -> dict[str, dict[str, list[tuple]]]:
        """Everything stored, read without changing it (see :mod:`._ipc_diag`)."""
        from ._ipc_diag import dump

        return dump(self)

    def check(self) -> dict[str, int]:
        """Verify every invariant; raises ``IPCCorrupt`` (see :mod:`._ipc_diag`)."""
        from ._ipc_diag import check

        try:
            return check(self)
        except AssertionError as exc:
            raise self.corrupt(str(exc)) from exc


def _thread_id() -> int:
    """This thread's id as a waiter slot records it (never 0: 0 means free)."""
    return threading.get_native_id() & 0xFFFFFFFF or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
