"""The IPC layer's shared store: queues, groups and waiters in one segment.

The store is composed, not inherited: it holds the mapped
:class:`._ipc_segment.Segment`, its :class:`._ipc_mutex.SegmentLock`, the
undo :class:`._ipc_journal.Journal`, the heap's
:class:`._ipc_alloc.Allocator`, the queue and group
:class:`._ipc_table.Table`, the :class:`._ipc_queues.Queues` and
:class:`._ipc_groups.Groups` operations, and the waiter slots and doorbells
of :mod:`._ipc_waiters`. The byte layout of all
of them is in :mod:`._ipc_layout`.

The store itself only wires them together, runs critical sections and
exposes the operations the layer (:mod:`.ipc`) calls.

Every critical section goes through ONE helper, :meth:`Store.run_locked`:
lock, operate and unlock inside one ``try``, ``raise lock.failed(exc)`` —
an exception at any point is undone and the lock released — then ring the
doorbells the operation collected, unlocked.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import posix_ipc

from . import _ipc_layout as _layout
from ._ipc_alloc import Allocator, carve_heap
from ._ipc_diag import check, dump
from ._ipc_errors import IPCMemoryFull
from ._ipc_groups import Groups
from ._ipc_journal import Journal
from ._ipc_layout import (
    CLEAN,
    E_COUNT,
    E_FULL,
    E_MASKS,
    ENTRY,
    H_FLUSHING,
    H_GUSED,
    H_QUSED,
    JOURNAL_SIZE,
    Header,
)
from ._ipc_mutex import SegmentLock, mutex_trylock
from ._ipc_queues import Queues
from ._ipc_segment import DEFAULT_MODE, Segment
from ._ipc_table import Table, name_key
from ._ipc_waiters import Doorbells, WaiterSlots

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
ENTRY_MASKS = _layout.ENTRY_MASKS
U32 = _layout.U32
U32X2 = _layout.U32X2
WORD = _layout.WORD
WORD2 = _layout.WORD2

__all__ = ["ENTRY", "Store", "name_key"]

logger = logging.getLogger("chanlite.layers.ipc")
T = TypeVar("T")

_U64_MASK = 0xFFFFFFFFFFFFFFFF

#: every open store, so that interpreter shutdown can release a lock the
#: main thread still holds (see _release_at_exit)
_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()


def _carve(mm: Any, header: Header) -> None:
    carve_heap(mm, header.heap, header.heapsize, header.maxord)


class Store:
    """The layer's shared data structures. :meth:`run_locked` runs any of
    the operation methods (which expect the lock held) as one atomic step."""

    def __init__(self, prefix: str, memory: int, max_channels: int, max_groups: int,
                 mode: int = DEFAULT_MODE, journal_size: int = JOURNAL_SIZE) -> None:
        seg = self.segment = Segment(prefix, memory, max_channels, max_groups, _carve,
                                     journal_size=journal_size, mode=mode)
        mm = self.mm = seg.mm
        corrupt = self.corrupt = seg.corrupt
        self.prefix, self.path, self.size = seg.prefix, seg.path, seg.size
        # the queue table's and journal's places, read on every operation
        self.qtable, self.qslots, self.qmask = seg.qtable, seg.qslots, seg.qslots - 1
        self.jbase = seg.jbase
        # the rest of the layout, for tools and tests
        self.gtable, self.gslots, self.heap = seg.gtable, seg.gslots, seg.heap
        self.heapsize, self.maxord = seg.heapsize, seg.maxord
        journal = self.journal = Journal(mm, seg.jbase, seg.jsize, seg.qtable, seg.size, corrupt)
        self.alloc = Allocator(mm, seg.heap, seg.heapsize, seg.maxord, journal, corrupt,
                               f"prefix {prefix!r}, {seg.size} bytes")
        self.queue_table = Table(mm, seg.qtable, seg.qslots, H_QUSED, seg.qmax, "channels",
                                 "max_channels", journal, corrupt, prefix)
        self.group_table = Table(mm, seg.gtable, seg.gslots, H_GUSED, seg.gmax, "groups",
                                 "max_groups", journal, corrupt, prefix)
        self.groups = Groups(mm, self.group_table, self.alloc, journal)
        queues = self.queues = Queues(mm, self.queue_table, self.alloc, journal, seg.jbase)
        # the queue operations, bound once (no frame of ours in between)
        self.push, self.pop, self.push_many = queues.push, queues.pop, queues.push_many
        self.pop_or_watch, self.pushes = queues.pop_or_watch, queues.pushes
        self.queue_stats, self.global_stats = queues.queue_stats, queues.global_stats
        self.waiters = WaiterSlots(mm, journal)
        self.bells = Doorbells(prefix, mode)
        #: the flush flag, stored like the journal length (see Journal.word): a
        #: repair that redoes a flush sets it again, and pack_into would zero it first
        self.flushing: memoryview = memoryview(mm)[H_FLUSHING : H_FLUSHING + WORD.size].cast("Q")
        lock = self.mutex = SegmentLock(mm, seg.path, self._repair, self._undo, corrupt)
        self._mref = lock.mref
        self._lock_slow = lock.lock_slow
        self.failed = lock.failed
        self.unlock = lock.unlock
        _open_stores.add(self)

    # ------------------------------------------------------------ the lock

    def run_locked(self, op: Callable[..., T], *args: Any) -> T:
        """Run ``op(*args)`` as one critical section; ring what it collected.

        The shape of every critical section: lock, operate and unlock inside
        one ``try``, ``raise lock.failed(exc)`` — an exception at any point
        (even between the lock and the operation, or in the unlock line) is
        undone and the lock released. The uncontended lock (one trylock, one
        read of the commit words) is inlined: a call costs as much.
        """
        try:
            err = mutex_trylock(self._mref)
            if err or WORD2.unpack_from(self.mm, H_FLUSHING) != CLEAN:
                self._lock_slow(err)
            result = op(*args)
            queues = self.queues
            rings = queues.rings
            if rings:
                queues.rings = 0
            self.unlock()
        except BaseException as exc:
            raise self.failed(exc)  # noqa: B904 - failed() chains what it converts
        if rings:
            self.bells.ring_mask(rings)
        return result

    def lock(self) -> None:
        """Take the lock outside :meth:`run_locked` (tests, tools)."""
        self.mutex.lock()

    def release_if_held(self) -> bool:
        """Undo and release the lock if this thread holds it."""
        return self.mutex.release_if_held()

    def holder(self) -> tuple[int, int | None]:
        """``(thread id, pid)`` holding the lock (see :meth:`SegmentLock.holder`)."""
        return self.mutex.holder()

    @property
    def lock_timeout(self) -> float | None:
        """Seconds a lock wait on a live holder may last (None: no limit)."""
        return self.mutex.lock_timeout

    @lock_timeout.setter
    def lock_timeout(self, value: float | None) -> None:
        self.mutex.lock_timeout = value

    def _repair(self, flushing: int, jlen: int) -> None:
        """A dead holder's half-done operation: roll it back (redo a flush)."""
        if jlen:
            self.journal.rollback(jlen)
        self.journal.count_recovery()
        if flushing:
            self.flush_locked()

    def _undo(self) -> None:
        """An exception left this thread holding the lock: nothing to ring, undo."""
        self.queues.rings = 0
        self.journal.abort()

    # ------------------------------------------------------------ journal

    def save(self, off: int, n: int) -> None:
        """Journal ``n`` bytes at ``off`` (see :meth:`Journal.save`)."""
        self.journal.save(off, n)

    @property
    def recoveries(self) -> int:
        """How many times a holder repaired a dead holder's half-done work."""
        return self.journal.recoveries

    # ------------------------------------------------------------ queues

    # ------------------------------------------------------------ groups

    def group_add(self, gkey: bytes, gh: int, chan: bytes, now: float) -> None:
        self.groups.add(gkey, gh, chan, now)

    def group_discard(self, gkey: bytes, gh: int, chan: bytes) -> None:
        self.groups.discard(gkey, gh, chan)

    def group_members(self, gkey: bytes, gh: int, added_after: float) -> list[str]:
        return self.groups.members(gkey, gh, added_after)

    # ----------------------------------------------------------- waiters

    def bell(self, slot: int) -> posix_ipc.Semaphore:
        """The doorbell of waiter ``slot`` (see :class:`Doorbells`)."""
        return self.bells.bell(slot)

    def claim_waiter(self, held: list[int] | None = None) -> int:
        """A free waiter slot for this thread (see :meth:`WaiterSlots.claim`)."""
        return self.waiters.claim(held)

    def release_waiter(self, slot: int, keys: list[tuple[bytes, int]],
                       held: list[int] | None = None) -> None:
        """Give ``slot`` back if this thread holds it; ``held[0]`` becomes -1
        once it is given back (after the commit: releasing twice is a no-op,
        so an interruption in between is harmless, unlike a lost release)."""
        if self.waiters.mine(slot):
            self.set_waiting(slot, keys, False)
            self.waiters.free(slot)
            self.journal.commit()
        if held is not None:
            held[0] = -1

    def set_waiting(self, slot: int, keys: list[tuple[bytes, int]], on: bool) -> None:
        """Set (or clear) waiter ``slot``'s bit on each queue, creating entries."""
        mm = self.mm
        bit = 1 << slot
        for qkey, qh in keys:
            e = self.queue_table.find(qkey, qh)
            if e < 0:
                if not on:
                    continue
                e = self.queue_table.insert(-e, qkey, qh)
            m0, m1 = ENTRY_MASKS.unpack_from(mm, e + E_MASKS)
            masks = m0 | (m1 << 64)
            new = masks | bit if on else masks & ~bit
            if new != masks:
                self.journal.save(e + E_MASKS, ENTRY_MASKS.size)
                ENTRY_MASKS.pack_into(mm, e + E_MASKS, new & _U64_MASK, new >> 64)
            if (not new and not U32.unpack_from(mm, e + E_COUNT)[0]
                    and not U32.unpack_from(mm, e + E_FULL)[0] and self.queue_table.crowded()):
                self.queue_table.delete(e)
        self.journal.commit()

    def wait_step(self, keys: list[tuple[bytes, int]], now: float, held: list[int],
                  watch: bool) -> tuple[tuple[int, bytes, bytes] | None, bool, int | None]:
        """One step of a blocking receive: pop; on a miss read the push
        counter (``watch``: a spin comes next) or register the waiter's
        doorbell on ``keys`` — in the same critical section as the failed
        pop, so a sender that queues a message afterwards sees the
        registration and rings. Returns ``(got, registered, pushes)``; no
        table room to register: ``(None, False, None)`` (the caller polls)."""
        got = self.pop(keys, now)
        if got is not None:
            if held[0] >= 0:
                self.release_waiter(held[0], keys, held)
            return got, False, None
        if watch:
            return None, False, self.pushes()
        try:
            if held[0] < 0:
                self.waiters.claim(held)
            if held[0] < 0:
                return None, False, None
            self.set_waiting(held[0], keys, True)
        except IPCMemoryFull:  # no table room to register: undo it, poll instead
            self.journal.abort()
            return None, False, None
        return None, True, None

    # ------------------------------------------------------------- flush

    def reset_heap(self) -> None:
        """Make the whole heap free and the tables empty."""
        mm = self.mm
        start, end = self.qtable, self.group_table.entry(self.group_table.slots)
        mm[start:end] = bytes(end - start)
        U32X2.pack_into(mm, H_QUSED, 0, 0)
        self.alloc.carve_heap()

    def flush_locked(self) -> None:
        """Empty everything; idempotent, so a dead flusher's work is redone."""
        self.flushing[0] = 1  # a crash from here on: the next holder redoes it
        self.reset_heap()
        for slot in self.waiters.claimed():  # their registrations are gone: wake them
            self.bells.ring(slot)
        self.journal.commit()
        self.flushing[0] = 0

    # ------------------------------------------------------- diagnostics

    def dump(self) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
        """Everything stored, read without changing it (see :mod:`._ipc_diag`)."""
        return dump(self)

    def check(self) -> dict[str, int]:
        """Verify every invariant; raises ``IPCCorrupt`` (see :mod:`._ipc_diag`)."""
        try:
            return check(self)
        except AssertionError as exc:
            raise self.corrupt(str(exc)) from exc

    # ---------------------------------------------------------- lifecycle

    def attached_pids(self) -> list[int]:
        """Other live processes using this prefix (see :class:`ProcessTable`)."""
        return self.segment.attached_pids()

    def detached(self) -> str | None:
        """Why this process no longer shares the segment, else None."""
        return self.segment.detached()

    def close(self) -> None:
        """Unmap (the views of the mutex and the commit words go first: they pin
        the mapping)."""
        _open_stores.discard(self)
        self.mutex.close()
        self.journal.close()
        self.flushing.release()
        self._mref = None
        self.unlock = self.mutex.unlock
        self.mm = None
        self.segment.close()


def _release_at_exit() -> None:
    """Interpreter shutdown: release a lock the main thread still holds, before
    non-daemon threads (which may wait for it) are joined."""
    for store in list(_open_stores):
        try:
            store.release_if_held()
        except Exception:  # noqa: BLE001 - never block the exit
            logger.exception("releasing %s at exit", store.path)


try:  # before threading joins non-daemon threads (as concurrent.futures does)
    threading._register_atexit(_release_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    atexit.register(_release_at_exit)
