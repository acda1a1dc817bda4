"""The IPC segment's lock: a process-shared pthread mutex, called through ctypes.

Why this mutex (see docs/architecture.md, "IPC layer"):

* **robust**: when its holder dies the kernel hands it to the next locker
  with EOWNERDEAD, which rolls the journal back and goes on — a SIGKILLed
  process can never freeze the others the way a semaphore-as-mutex did in
  asgi_ipc;
* **error-checking**: relocking by the holder answers EDEADLK instead of
  deadlocking and unlocking by another thread answers EPERM, so
  ``SegmentLock.failed()`` can ask "does this thread hold it?" with a
  ``timedlock`` whose deadline is in the past, which never sleeps;
* **called through ctypes**, no compiled code of ours. Uncontended it never
  enters the kernel.

The mutex lives inside the segment; this module knows how to call it, how
to read who holds it, and (:class:`SegmentLock`, a component the store
holds) how a process takes, waits for and releases it. What to do with a
dead holder's half-done work is not its business: the store hands it a
``repair(flushing, jlen)`` and an ``undo()`` callable (the journal's).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from . import _ipc_layout as _layout
from ._ipc_errors import IPCCorrupt, IPCError, IPCLockTimeout
from ._ipc_layout import (
    CLEAN,
    H_FLUSHING,
    H_MUTEX,
    MUTEX_SIZE,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
U32 = _layout.U32
WORD2 = _layout.WORD2

__all__ = [
    "LOCK_SLICE",
    "LOCK_SPINS",
    "LOCK_WARN_AFTER",
    "LOCK_WORD",
    "MUTEX_SIZE",
    "TID_MASK",
    "SegmentLock",
    "deadline_in",
    "init_mutex",
    "mutex_consistent",
    "mutex_timedlock",
    "mutex_trylock",
    "mutex_unlock",
    "thread_pid",
]

#: trylock attempts before sleeping on a busy mutex
LOCK_SPINS = 20
#: seconds of one slice of a blocking lock wait (between holder checks)
LOCK_SLICE = 1.0
#: a holder keeping the lock this long is logged (then every such interval)
LOCK_WARN_AFTER = 10.0
#: the kernel's robust-futex protocol: the holder's tid in the word's low bits
TID_MASK = 0x3FFFFFFF

logger = logging.getLogger("chanlite.layers.ipc")

_libc = ctypes.CDLL(None, use_errno=True)
for _fn in (_libc.pthread_mutex_lock, _libc.pthread_mutex_unlock,
            _libc.pthread_mutex_consistent):
    _fn.argtypes = [ctypes.c_void_p]
    _fn.restype = ctypes.c_int
_libc.pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libc.pthread_mutexattr_setpshared.argtypes = [ctypes.c_void_p, ctypes.c_int]
_libc.pthread_mutexattr_setrobust.argtypes = [ctypes.c_void_p, ctypes.c_int]
_libc.pthread_mutexattr_settype.argtypes = [ctypes.c_void_p, ctypes.c_int]
_libc.pthread_mutexattr_init.argtypes = [ctypes.c_void_p]
#: ``mutex_consistent(address)``: adopt the mutex of a dead holder
mutex_consistent = _libc.pthread_mutex_consistent

# trylock and unlock never block: call them without releasing the GIL. They
# are called with a ctypes.byref() of the mutex and *no* argtypes: ctypes
# then passes the pointer as is instead of converting a Python int through
# c_void_p.from_param on every call (0.63 -> 0.36 µs per lock+unlock pair).
_pylibc = ctypes.PyDLL(None)
mutex_trylock = _pylibc.pthread_mutex_trylock
mutex_unlock = _pylibc.pthread_mutex_unlock
for _fn in (mutex_trylock, mutex_unlock):
    _fn.restype = ctypes.c_int


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# ``mutex_timedlock(address, deadline_in(s))`` sleeps (ctypes.CDLL releases
# the GIL) until an absolute CLOCK_REALTIME deadline.
mutex_timedlock = _libc.pthread_mutex_timedlock
mutex_timedlock.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Timespec)]
mutex_timedlock.restype = ctypes.c_int
_PAST = ctypes.byref(_Timespec(0, 0))


def deadline_in(seconds: float | None) -> Any:
    """A timedlock deadline ``seconds`` from now; None: one in the past (no wait)."""
    if seconds is None:
        return _PAST
    deadline = time.time() + seconds
    return ctypes.byref(_Timespec(int(deadline), int(deadline % 1 * 1e9)))


def _mutex_attr() -> Any:
    attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4-8 bytes
    errors = [
        _libc.pthread_mutexattr_init(attr),
        _libc.pthread_mutexattr_setpshared(attr, 1),  # PTHREAD_PROCESS_SHARED
        _libc.pthread_mutexattr_setrobust(attr, 1),  # PTHREAD_MUTEX_ROBUST
        _libc.pthread_mutexattr_settype(attr, 2),  # PTHREAD_MUTEX_ERRORCHECK
    ]
    failed = [err for err in errors if err]
    if failed:
        raise OSError(failed[0], f"cannot set up a mutex: {os.strerror(failed[0])}")
    return attr


def init_mutex(address: int) -> int:
    """Initialise the mutex at ``address`` (in the mapping); 0 or an errno."""
    return int(_libc.pthread_mutex_init(address, _mutex_attr()))


def _find_lock_word() -> int:
    """Offset of the futex word (holder's thread id) inside a pthread mutex.

    The kernel's robust-futex protocol requires the holder's tid in that
    word (glibc puts it at 0, musl at 4): found once by locking a private
    mutex, so no libc layout is assumed.
    """
    mutex = ctypes.create_string_buffer(MUTEX_SIZE)
    _libc.pthread_mutex_init(mutex, _mutex_attr())
    _libc.pthread_mutex_lock(mutex)
    tid = threading.get_native_id()
    words = struct.unpack(f"<{MUTEX_SIZE // 4}I", mutex.raw)
    _libc.pthread_mutex_unlock(mutex)
    for index, word in enumerate(words):
        if word & TID_MASK == tid:
            return index * 4
    raise OSError("cannot find the owner thread id in a locked pthread mutex")


#: offset of the holder's thread id inside the mutex
LOCK_WORD = _find_lock_word()
#: the segment's mutex sits at H_MUTEX in its header: where its holder's tid is
_LOCK_WORD = H_MUTEX + LOCK_WORD


def thread_pid(tid: int) -> int | None:
    """The pid of the process thread ``tid`` belongs to; None if no such thread."""
    try:
        os.kill(tid, 0)  # Linux accepts a thread id here
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        with open(f"/proc/{tid}/status") as status:
            for line in status:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return tid


#: what reading garbage bytes raises (struct, mmap indexing, decoding, the
#: diagnostics' assertions): from a critical section, a corrupt segment
_GARBAGE_ERRORS = (struct.error, IndexError, ValueError, OverflowError, AssertionError)


def _describe_holder(tid: int, pid: int | None, waited: float, path: str) -> str:
    return (
        f"{path}: segment locked by pid {pid} for {waited:.1f}s (by its thread {tid}); "
        f"if that process is stuck, stop it (kill {pid}): the next locker then undoes "
        "its half-done operation"
    )


class SegmentLock:
    """Take, wait for and release the segment's mutex (a component of the store).

    ``repair(flushing, jlen)`` is called by :meth:`lock` when the commit
    words say the previous holder died mid-operation (the journal rolls it
    back); ``undo()`` by :meth:`release_if_held` when an exception left this
    thread holding the lock (the store rolls its journal back and forgets
    the doorbells it meant to ring); ``corrupt(problem)`` builds the error
    for a segment that cannot be trusted.
    """

    #: seconds a lock wait on a live holder may last before IPCLockTimeout;
    #: None waits (logging every LOCK_WARN_AFTER s) as long as the holder lives
    lock_timeout: float | None = None

    def __init__(
        self, mm: Any, path: str, repair: Callable[[int, int], None],
        undo: Callable[[], None], corrupt: Callable[[str], IPCCorrupt],
    ) -> None:
        self.mm: Any = mm
        self.path = path
        self._repair = repair
        self._undo = undo
        self.corrupt = corrupt
        self._mbuf: Any = (ctypes.c_char * MUTEX_SIZE).from_buffer(mm, H_MUTEX)
        self.maddr = ctypes.addressof(self._mbuf)
        #: ``ctypes.byref`` of the mutex, what ``mutex_trylock`` takes (keeps
        #: ``_mbuf``, hence the mapping, alive)
        self.mref: Any = ctypes.byref(self._mbuf)
        #: ``unlock()``: one C call, no Python frame (it never blocks or fails
        #: for the owner; called on every operation)
        self.unlock: Callable[[], int] = functools.partial(mutex_unlock, self.mref)

    def close(self) -> None:
        """Drop the ctypes view (it pins the mapping) before the mapping closes."""
        self._mbuf = self.mref = self.mm = None
        self.unlock = _closed

    def lock(self) -> None:
        """Take the robust mutex; repair a dead holder's half-done work.

        The uncontended case is one trylock and one read of the commit
        words; :meth:`._ipc_store.Store.run_locked` (the one critical-section
        helper) inlines exactly these two lines (a Python call costs as much
        as the trylock itself).
        """
        err = mutex_trylock(self.mref)
        if err or WORD2.unpack_from(self.mm, H_FLUSHING) != CLEAN:
            self.lock_slow(err)

    def lock_slow(self, err: int) -> None:
        """Finish :meth:`lock` after a first trylock that returned ``err``.

        Critical sections last a few microseconds, far less than a futex
        sleep and wake-up, so a busy mutex is retried a few times (with the
        GIL held, ~0.2 µs each) before sleeping in the kernel. Then a dead
        owner's mutex is made consistent and its journal rolled back.
        """
        if err == errno.EBUSY:
            ref = self.mref
            for _ in range(LOCK_SPINS):
                err = mutex_trylock(ref)
                if err != errno.EBUSY:
                    break
            else:
                err = self._wait_lock()
        if err:
            if err == errno.EOWNERDEAD:
                mutex_consistent(self.maddr)  # the journal says what to undo
            elif err == errno.EDEADLK:
                # This thread holds it already: an exception escaped a critical
                # section before failed() could release it. Its journal is
                # rolled back below exactly as a dead holder's would be.
                logger.warning("%s: this thread still held the segment lock; repairing",
                               self.path)
            else:
                raise self.corrupt(f"its lock cannot be taken ({os.strerror(err)})")
        flushing, jlen = WORD2.unpack_from(self.mm, H_FLUSHING)
        if flushing or jlen:
            self._repair(flushing, jlen)

    def _wait_lock(self) -> int:
        """Sleep on the busy mutex in slices of LOCK_SLICE s; between slices
        find out who holds it. A holder thread that does not exist means the
        lock word is garbage (a live or dead holder is always a real thread:
        a dead one is flagged by the kernel and handed over): IPCCorrupt. A
        live holder is logged after LOCK_WARN_AFTER s and, with
        ``lock_timeout``, waited for that long only."""
        started = time.monotonic()
        warn_at = started + LOCK_WARN_AFTER
        limit = self.lock_timeout
        while True:
            wait = LOCK_SLICE if limit is None else max(
                0.0, min(LOCK_SLICE, started + limit - time.monotonic()))
            err: int = mutex_timedlock(self.maddr, deadline_in(wait))
            if err != errno.ETIMEDOUT:
                return err
            tid, pid = self.holder()
            if tid and pid is None and self.holder()[0] == tid:
                raise self.corrupt(f"its lock is held by thread id {tid}, which does not exist")
            now = time.monotonic()
            if limit is not None and now - started >= limit:
                raise IPCLockTimeout(_describe_holder(tid, pid, now - started, self.path))
            if now >= warn_at:
                logger.warning("%s", _describe_holder(tid, pid, now - started, self.path))
                warn_at = now + LOCK_WARN_AFTER

    def holder(self) -> tuple[int, int | None]:
        """``(thread id, pid)`` holding the lock, read without it: ``(0, None)``
        when free, pid None when no such thread exists."""
        tid = U32.unpack_from(self.mm, _LOCK_WORD)[0] & TID_MASK
        return (tid, thread_pid(tid)) if tid else (0, None)

    def failed(self, exc: BaseException) -> BaseException:
        """Clean up after ``exc`` escaped a critical section; return what to raise.

        Every critical section is ``try: lock; ...; unlock  except
        BaseException as exc: raise lock.failed(exc)``, so an exception at
        any point — before the lock was taken, inside the operation, in a
        repair, after the unlock — lands here. The mutex, not a Python
        variable, says whether this thread holds it (EDEADLK): then the
        journal is rolled back and the lock released. A raw decoding error
        from the segment's bytes becomes :class:`IPCCorrupt`.
        """
        self.release_if_held()
        if isinstance(exc, _GARBAGE_ERRORS) and not isinstance(exc, IPCError):
            error = self.corrupt(f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            return error
        return exc

    def release_if_held(self) -> bool:
        """Undo and release the lock if this thread holds it; True if it did."""
        if self.mm is None or self.mref is None:
            return False
        err = mutex_timedlock(self.maddr, deadline_in(None))  # in the past: never sleeps
        if err == errno.EDEADLK:  # held by this thread
            try:
                self._undo()
            except Exception:  # noqa: BLE001 - a corrupt journal: the next holder reports it
                logger.exception("%s: cannot roll back an interrupted operation", self.path)
            finally:
                self.unlock()
            return True
        if err in (0, errno.EOWNERDEAD):  # it was free (or its holder died): give it back
            if err:
                mutex_consistent(self.maddr)  # the journal stays for the next holder
            self.unlock()
        return False


def _closed() -> int:
    """``unlock`` of a closed lock: nothing is mapped any more."""
    return 0
