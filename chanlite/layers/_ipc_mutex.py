"""The IPC segment's lock: a process-shared pthread mutex, called through ctypes.

Why this mutex (see docs/architecture.md, "IPC layer"):

* **robust**: when its holder dies the kernel hands it to the next locker
  with EOWNERDEAD, which rolls the journal back and goes on — a SIGKILLed
  process can never freeze the others the way a semaphore-as-mutex did in
  asgi_ipc;
* **error-checking**: relocking by the holder answers EDEADLK instead of
  deadlocking and unlocking by another thread answers EPERM, so
  ``Segment.failed()`` can ask "does this thread hold it?" with a
  ``timedlock`` whose deadline is in the past, which never sleeps;
* **called through ctypes**, no compiled code of ours. Uncontended it never
  enters the kernel.

The mutex lives inside the segment; this module only knows how to call it
and how to read who holds it.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
import time

__all__ = [
    "LOCK_SLICE",
    "LOCK_SPINS",
    "LOCK_WARN_AFTER",
    "LOCK_WORD",
    "MUTEX_SIZE",
    "TID_MASK",
    "deadline_in",
    "init_mutex",
    "mutex_consistent",
    "mutex_timedlock",
    "mutex_trylock",
    "mutex_unlock",
    "thread_pid",
]

#: bytes reserved for a pthread_mutex_t (40 on glibc x86-64, 24-40 elsewhere)
MUTEX_SIZE = 64
#: trylock attempts before sleeping on a busy mutex
LOCK_SPINS = 20
#: seconds of one slice of a blocking lock wait (between holder checks)
LOCK_SLICE = 1.0
#: a holder keeping the lock this long is logged (then every such interval)
LOCK_WARN_AFTER = 10.0
#: the kernel's robust-futex protocol: the holder's tid in the word's low bits
TID_MASK = 0x3FFFFFFF

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


def deadline_in(seconds: float | None) -> object:
    """A timedlock deadline ``seconds`` from now; None: one in the past (no wait)."""
    if seconds is None:
        return _PAST
    deadline = time.time() + seconds
    return ctypes.byref(_Timespec(int(deadline), int(deadline % 1 * 1e9)))


def _mutex_attr() -> ctypes.Array:
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
    return _libc.pthread_mutex_init(address, _mutex_attr())


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
