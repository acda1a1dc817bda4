"""Blocked receivers of the IPC layer: their waiter slots and doorbells.

A receiver that finds nothing claims one of ``MAX_WAITERS`` slots in the
segment's header (``(pid, thread id)``; 0 = free), sets the slot's bit on
the queues it waits for (a queue entry's waiter masks, see
:mod:`._ipc_store`) and sleeps on its own POSIX semaphore, the slot's
doorbell. A sender rings the doorbells of the bits it finds, after
unlocking. Both classes are components of the store.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import posix_ipc

from . import _ipc_layout as _layout
from ._ipc_errors import IPCPermissionError
from ._ipc_journal import Journal
from ._ipc_layout import (
    MAX_WAITERS,
    WAITER_AT,
    semaphore_name,
)
from ._ipc_segment import check_trust

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
WAITER = _layout.WAITER

__all__ = ["Doorbells", "WaiterSlots", "alive", "thread_id"]

logger = logging.getLogger("chanlite.layers.ipc")


def thread_id() -> int:
    """This thread's id as a waiter slot records it (never 0: 0 means free)."""
    return threading.get_native_id() & 0xFFFFFFFF or 1


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Doorbells:
    """The doorbell semaphores of one prefix, opened once per process."""

    def __init__(self, prefix: str, mode: int) -> None:
        self.prefix = prefix
        self.mode = mode
        self._bells: dict[int, posix_ipc.Semaphore | IPCPermissionError] = {}

    def bell(self, slot: int) -> posix_ipc.Semaphore:
        """The doorbell semaphore of waiter ``slot`` (opened once per process).

        Created exclusively with the layer's ``mode``; an existing one is
        used only if this uid owns it with no wider mode (else another user
        could keep receivers awake or watch them).
        """
        sem = self._bells.get(slot)
        if sem is None:
            sem = self._bells[slot] = self._open_bell(slot)
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
            check_trust(os.stat(path), path, self.mode)
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

    def ring_mask(self, masks: int) -> None:
        """Ring every waiter whose bit is set in ``masks`` (call it unlocked:
        a woken receiver then finds the lock free instead of sleeping on it)."""
        while masks:
            low = masks & -masks
            self.ring(low.bit_length() - 1)
            masks ^= low


class WaiterSlots:
    """The header's waiter slots (the caller holds the lock)."""

    def __init__(self, mm: Any, journal: Journal) -> None:
        self.mm: Any = mm
        self.journal = journal

    def claim(self, held: list[int] | None = None) -> int:
        """A free slot for this thread (or a dead process's), else -1.

        ``held[0]`` is set to the slot *before* the claim commits, so a
        caller interrupted at any point knows every slot it may hold.
        """
        mm = self.mm
        pid = os.getpid()
        dead = -1
        for slot in range(MAX_WAITERS):
            owner, claimed = WAITER.unpack_from(mm, WAITER_AT[slot])
            if not claimed:
                break
            if dead < 0 and owner != pid and not alive(owner):
                dead = slot
        else:
            if dead < 0:
                return -1
            slot = dead
        at = WAITER_AT[slot]
        self.journal.save(at, WAITER.size)
        WAITER.pack_into(mm, at, pid, thread_id())
        if held is not None:
            held[0] = slot
        self.journal.commit()
        return slot

    def mine(self, slot: int) -> bool:
        """Whether this thread holds ``slot``."""
        return bool(WAITER.unpack_from(self.mm, WAITER_AT[slot]) == (os.getpid(), thread_id()))

    def free(self, slot: int) -> None:
        """Give ``slot`` back (journaled; the caller commits)."""
        at = WAITER_AT[slot]
        self.journal.save(at, WAITER.size)
        WAITER.pack_into(self.mm, at, 0, 0)

    def claimed(self) -> list[int]:
        """The slots claimed (by a live or dead thread)."""
        return [slot for slot in range(MAX_WAITERS)
                if WAITER.unpack_from(self.mm, WAITER_AT[slot])[1]]
