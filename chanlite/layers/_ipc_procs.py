"""The attached-process table of an IPC segment (``chanlite_ipc --remove``).

A pid table in the header (guarded by the same fcntl lock as creation,
which the kernel drops when its holder dies). A killed process leaves its
pid behind; readers skip pids that are no longer alive and the next
registration reuses the slot. A torn pid write is harmless: at worst a
dead-looking slot is reused or a stray pid is listed once.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from . import _ipc_layout as _layout
from ._ipc_layout import (
    MAX_PROCS,
    MAX_WAITERS,
    PROC_AT,
    WAITER_AT,
    segment_path,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
PID = _layout.PID
WAITER = _layout.WAITER

__all__ = ["ProcessTable"]



def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class ProcessTable:
    """The pid-table methods of :class:`._ipc_segment.Segment` (a mixin).

    The segment provides ``mm``, ``_fd``, ``prefix``, ``_inode`` and
    ``_proc_slot`` (set by :meth:`_register_process` under the creation lock).
    """

    mm: Any
    prefix: str
    _fd: int
    _inode: int
    _proc_slot: int

    def _register_process(self) -> int:
        pid = os.getpid()
        free = -1
        for slot in range(MAX_PROCS):
            (owner,) = PID.unpack_from(self.mm, PROC_AT[slot])
            if owner == pid:
                return slot
            if free < 0 and (owner == 0 or not _pid_alive(owner)):
                free = slot
        if free >= 0:
            PID.pack_into(self.mm, PROC_AT[free], pid)
        return free  # -1: table full; the process simply goes unlisted

    def _unregister_process(self) -> None:
        slot = getattr(self, "_proc_slot", -1)
        if slot < 0 or getattr(self, "mm", None) is None or self._fd < 0:
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            at = PROC_AT[slot]
            if PID.unpack_from(self.mm, at)[0] == os.getpid():
                PID.pack_into(self.mm, at, 0)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._proc_slot = -1

    def attached_pids(self) -> list[int]:
        """Live processes attached to this segment, this one excluded: those in
        the pid table plus any blocked in a receive (the waiter slots)."""
        me = os.getpid()
        pids = {PID.unpack_from(self.mm, PROC_AT[slot])[0] for slot in range(MAX_PROCS)}
        for slot in range(MAX_WAITERS):
            owner, claimed = WAITER.unpack_from(self.mm, WAITER_AT[slot])
            if claimed:
                pids.add(owner)
        return sorted(pid for pid in pids if pid and pid != me and _pid_alive(pid))

    def detached(self) -> str | None:
        """Why this process no longer shares the segment (it was removed, or
        removed and created anew, in /dev/shm), or None while it does."""
        path = segment_path(self.prefix)
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return f"{path} was removed (manage.py chanlite_ipc --remove?)"
        if inode != self._inode:
            return f"{path} was removed and created anew"
        return None
