"""The shared-memory segment of the IPC layer: layout, lock and undo journal.

Why this shape (see docs/architecture.md, "IPC layer"):

* **One segment per prefix**, ``/dev/shm/chanlite.<prefix>``, of fixed size.
  Everything lives in it at fixed offsets: a header (magic, format version,
  layout, allocator state, waiter slots), an undo journal, the queue table,
  the group table and the heap of message blocks. No pickling, no resizing.
* **The mutex is a robust, process-shared pthread mutex in the header**
  (through ctypes). When its holder dies the kernel hands it to the next
  locker with EOWNERDEAD, so a SIGKILLed process can never freeze the others
  the way a semaphore-as-mutex did in asgi_ipc. An fcntl lock on the fd
  serialises only the creation of the segment.
* **An undo journal makes every operation atomic.** Before a word of shared
  state is changed its old bytes are appended to the journal and the journal
  length (one 8-byte store) is bumped; the operation commits by storing 0
  into that length. A lock holder that finds a non-zero length knows the
  previous holder died mid-operation and copies the old bytes back, newest
  first. Memory that was free before the operation (a new message body) is
  not journaled: rolling the allocator back makes it free again.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import mmap
import os
import re
import struct

import posix_ipc

from .base import ChannelFull

__all__ = [
    "CLEAN",
    "FORMAT_VERSION",
    "WORD",
    "WORD2",
    "MAGIC",
    "IPCError",
    "IPCFormatError",
    "IPCMemoryFull",
    "Segment",
    "check_prefix",
    "remove_prefix",
    "segment_name",
    "semaphore_name",
]

MAGIC = b"CHNLTIPC"
FORMAT_VERSION = 1
MAX_WAITERS = 128  # two 64-bit masks per queue entry
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")

# ---- header layout (offsets into the segment) -------------------------------
H_MAGIC = 0  # 8s
H_VERSION = 8  # u32 format version
H_SIZE = 16  # u64 segment size
H_QSLOTS = 24  # u32 queue table slots (power of two)
H_GSLOTS = 28  # u32 group table slots (power of two)
H_HEAP = 32  # u64 heap offset
H_HEAPSIZE = 40  # u64
H_QTABLE = 48  # u64
H_GTABLE = 56  # u64
H_JOURNAL = 64  # u64
H_JSIZE = 72  # u64
H_MAXORD = 80  # u32 largest block order
H_RECOVERIES = 88  # u64 journals rolled back (diagnostics, tests)
H_FLUSHING = 96  # u64 1 while a flush runs (redone by the next holder)
H_JLEN = 104  # u64 bytes of journal in use; 0 = no operation in progress
H_QUSED = 112  # u32 queue entries in use
H_GUSED = 116  # u32 group entries in use
H_PUSHES = 120  # u64 pushes so far (a hint for spinning receivers; not journaled)
H_BITMAP = 256  # u64 buddy free lists that are non-empty
H_HEADS = 264  # u64[64] buddy free list heads
H_QHEADS = 776  # u64[64] quick (not coalesced) free list heads
H_WAITERS = 1536  # MAX_WAITERS x (u32 pid, u32 claimed)
H_MUTEX = 2560  # a process-shared, robust pthread mutex (<= 64 bytes)
MUTEX_SIZE = 64
H_PROCS = 3072  # MAX_PROCS x u32 pid: the processes attached (chanlite_ipc --remove)
MAX_PROCS = 128
HEADER_SIZE = 4096
ALLOC_REGION = (H_BITMAP, H_WAITERS - H_BITMAP)

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
#: The journal length and the flush flag are the commit points, so each must
#: change in ONE store: "<Q" packs byte by byte (a process killed half-way
#: would leave a torn length), the native "Q" is a single aligned memcpy.
WORD = struct.Struct("Q")
WORD2 = struct.Struct("QQ")  # (flush flag, journal length) at H_FLUSHING
#: ``WORD2`` of a segment with no operation in progress (nothing to repair)
CLEAN = (0, 0)
_QI = struct.Struct("<QI")
_JENTRY = 12


# The mutex: a process-shared *robust* pthread mutex inside the segment,
# called through ctypes (no compiled code of ours). Uncontended it never
# enters the kernel; when its owner dies the kernel hands it to the next
# locker with EOWNERDEAD, which rolls the journal back and goes on.
_libc = ctypes.CDLL(None, use_errno=True)
_mutex_lock = _libc.pthread_mutex_lock
_mutex_unlock = _libc.pthread_mutex_unlock
for _fn in (_mutex_lock, _mutex_unlock, _libc.pthread_mutex_consistent):
    _fn.argtypes = [ctypes.c_void_p]
    _fn.restype = ctypes.c_int
# trylock and unlock never block: call them without releasing the GIL. They
# are called with a ctypes.byref() of the mutex and *no* argtypes: ctypes
# then passes the pointer as is instead of converting a Python int through
# c_void_p.from_param on every call (0.63 -> 0.36 µs per lock+unlock pair).
_pylibc = ctypes.PyDLL(None)
_mutex_trylock = _pylibc.pthread_mutex_trylock
_mutex_unlock_fast = _pylibc.pthread_mutex_unlock
for _fn in (_mutex_trylock, _mutex_unlock_fast):
    _fn.restype = ctypes.c_int
_EBUSY = errno.EBUSY
#: trylock attempts before sleeping on a busy mutex
LOCK_SPINS = 20
_libc.pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libc.pthread_mutexattr_setpshared.argtypes = [ctypes.c_void_p, ctypes.c_int]
_libc.pthread_mutexattr_setrobust.argtypes = [ctypes.c_void_p, ctypes.c_int]
_libc.pthread_mutexattr_init.argtypes = [ctypes.c_void_p]


def _init_mutex(mm: mmap.mmap) -> None:
    attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4-8 bytes
    view = (ctypes.c_char * MUTEX_SIZE).from_buffer(mm, H_MUTEX)
    errors = [
        _libc.pthread_mutexattr_init(attr),
        _libc.pthread_mutexattr_setpshared(attr, 1),  # PTHREAD_PROCESS_SHARED
        _libc.pthread_mutexattr_setrobust(attr, 1),  # PTHREAD_MUTEX_ROBUST
    ]
    errors.append(_libc.pthread_mutex_init(ctypes.addressof(view), attr))
    view = None  # release the export so the mapping can be closed
    failed = [err for err in errors if err]
    if failed:
        raise IPCError(f"cannot create the IPC layer's mutex: {os.strerror(failed[0])}")


class IPCError(Exception):
    """The IPC layer's shared memory cannot be created or used."""


class IPCFormatError(IPCError):
    """The segment was written by another chanlite IPC format version."""


class IPCMemoryFull(ChannelFull):
    """The shared segment has no room for this message, channel or group.

    A ``ChannelFull`` so that producers apply the same back-pressure as for
    a full channel; the message names the setting to raise.
    """


def check_prefix(prefix: object) -> str:
    """Validate ``prefix``: it names files in /dev/shm, so keep it plain."""
    if type(prefix) is not str or _PREFIX.fullmatch(prefix) is None:
        raise ValueError(
            f"IPC prefix must be 1-64 ASCII letters, digits, '_' or '-', not {prefix!r}"
        )
    return prefix


def segment_name(prefix: str) -> str:
    """The posix_ipc name of the segment (``/dev/shm/chanlite.<prefix>``)."""
    return f"/chanlite.{prefix}"


def semaphore_name(prefix: str, slot: int) -> str:
    """The doorbell of waiter ``slot`` (``/dev/shm/sem.chanlite.<prefix>.w<slot>``)."""
    return f"/chanlite.{prefix}.w{slot}"


def remove_prefix(prefix: str) -> bool:
    """Unlink the segment and doorbells of ``prefix``; True if a segment existed.

    Processes still attached keep their mapping (POSIX unlink semantics) but
    no longer share it with newcomers, so only call this when none runs.
    """
    check_prefix(prefix)
    existed = True
    try:
        posix_ipc.unlink_shared_memory(segment_name(prefix))
    except posix_ipc.ExistentialError:
        existed = False
    for slot in range(MAX_WAITERS):
        try:
            posix_ipc.unlink_semaphore(semaphore_name(prefix, slot))
        except posix_ipc.ExistentialError:
            pass
    return existed


_PID = struct.Struct("I")  # native: one aligned store, never torn by a kill


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Segment:
    """A mapped segment with its cross-process lock and undo journal.

    Subclasses (the allocator and the store) call :meth:`save` before every
    change to shared state, and :meth:`commit` when the state is consistent.
    """

    def __init__(
        self,
        prefix: str,
        memory: int,
        max_channels: int,
        max_groups: int,
        journal_size: int = 256 * 1024,
    ) -> None:
        self.prefix = check_prefix(prefix)
        self._shm = posix_ipc.SharedMemory(segment_name(prefix), posix_ipc.O_CREAT, mode=0o600)
        self._fd = self._shm.fd
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(self._fd).st_size
            if size == 0:
                self._reserve(memory)
                size = memory
            self.mm = mmap.mmap(self._fd, size)
            magic = bytes(self.mm[H_MAGIC : H_MAGIC + 8])
            if magic == bytes(8):  # new, or its creator died while initialising it
                self._initialise(size, max_channels, max_groups, journal_size)
            elif magic != MAGIC:
                raise IPCFormatError(
                    f"/dev/shm{segment_name(prefix)} is not a chanlite IPC segment; "
                    "choose another 'prefix'"
                )
            self._check_version()
        except BaseException:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            self.close()
            raise
        self._proc_slot = self._register_process()
        self._inode = os.fstat(self._fd).st_ino
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._load_layout()
        self._jlen = 0
        self._mbuf = (ctypes.c_char * MUTEX_SIZE).from_buffer(self.mm, H_MUTEX)
        self._maddr = ctypes.addressof(self._mbuf)
        self._mref = ctypes.byref(self._mbuf)  # keeps _mbuf (and the mapping) alive
        #: ``unlock()``: one C call, no Python frame (it never blocks or fails
        #: for the owner; called on every operation)
        self.unlock = functools.partial(_mutex_unlock_fast, self._mref)

    # ---------------------------------------------------------- creation

    def _reserve(self, memory: int) -> None:
        os.ftruncate(self._fd, memory)
        try:
            # Touch the pages now: on a full tmpfs a sparse segment would
            # SIGBUS on first use; this turns that into a clear error.
            os.posix_fallocate(self._fd, 0, memory)
        except OSError as exc:
            os.ftruncate(self._fd, 0)
            raise IPCError(
                f"cannot reserve memory={memory} bytes in /dev/shm for IPC prefix "
                f"{self.prefix!r} ({exc.strerror}); free space in /dev/shm or lower "
                "'memory' in the layer CONFIG"
            ) from exc

    def _initialise(self, size: int, max_channels: int, max_groups: int, jsize: int) -> None:
        mm = self.mm
        qslots = _pow2_at_least(max_channels * 4 // 3 + 1)
        gslots = _pow2_at_least(max_groups * 4 // 3 + 1)
        from ._ipc_store import ENTRY

        journal = HEADER_SIZE
        qtable = journal + jsize
        gtable = qtable + qslots * ENTRY
        heap = (gtable + gslots * ENTRY + 4095) & ~4095
        if heap + 4096 > size:
            raise ValueError(
                f"memory={size} is too small for max_channels={max_channels} and "
                f"max_groups={max_groups} (tables need {heap} bytes); raise 'memory'"
            )
        mm[0:heap] = bytes(heap)
        heapsize = size - heap
        _Q.pack_into(mm, H_SIZE, size)
        struct.pack_into("<II", mm, H_QSLOTS, qslots, gslots)
        struct.pack_into("<QQQQQQ", mm, H_HEAP, heap, heapsize, qtable, gtable, journal, jsize)
        struct.pack_into("<I", mm, H_MAXORD, min(heapsize.bit_length() - 1, 62))
        struct.pack_into("<I", mm, H_VERSION, FORMAT_VERSION)
        self._load_layout()
        self._jlen = 0
        self.reset_heap()
        _init_mutex(mm)
        mm[H_MAGIC : H_MAGIC + 8] = MAGIC  # last: the segment is now valid

    def _check_version(self) -> None:
        (version,) = struct.unpack_from("<I", self.mm, H_VERSION)
        if version != FORMAT_VERSION:
            raise IPCFormatError(
                f"/dev/shm{segment_name(self.prefix)} uses chanlite IPC format "
                f"v{version} but this chanlite uses v{FORMAT_VERSION}: stop every "
                f"process using prefix {self.prefix!r}, then run `manage.py chanlite_ipc "
                f"--prefix {self.prefix} --remove` (or use another 'prefix')"
            )

    def _load_layout(self) -> None:
        mm = self.mm
        (self.size,) = _Q.unpack_from(mm, H_SIZE)
        self.qslots, self.gslots = struct.unpack_from("<II", mm, H_QSLOTS)
        self.qmask = self.qslots - 1
        (self.heap, self.heapsize, self.qtable, self.gtable, self.jbase, self.jsize) = (
            struct.unpack_from("<QQQQQQ", mm, H_HEAP)
        )
        (self.maxord,) = struct.unpack_from("<I", mm, H_MAXORD)

    def reset_heap(self) -> None:
        """Make the whole heap free and the tables empty (creation and flush)."""
        raise NotImplementedError

    # ----------------------------------------------------- lock + journal

    def lock(self) -> None:
        """Take the robust mutex; repair a dead holder's half-done work.

        The uncontended case is one trylock and one read of the commit
        words; the hot paths in :mod:`.ipc` inline exactly these two lines
        (a Python call costs as much as the trylock itself).
        """
        err = _mutex_trylock(self._mref)
        if err or WORD2.unpack_from(self.mm, H_FLUSHING) != CLEAN:
            self.lock_slow(err)

    def lock_slow(self, err: int) -> None:
        """Finish :meth:`lock` after a first trylock that returned ``err``.

        Critical sections last a few microseconds, far less than a futex
        sleep and wake-up, so a busy mutex is retried a few times (with the
        GIL held, ~0.2 µs each) before sleeping in the kernel. Then a dead
        owner's mutex is made consistent and its journal rolled back.
        """
        if err == _EBUSY:
            ref = self._mref
            for _ in range(LOCK_SPINS):
                err = _mutex_trylock(ref)
                if err != _EBUSY:
                    break
            else:
                err = _mutex_lock(self._maddr)  # sleeps; ctypes.CDLL releases the GIL
        if err:
            if err != errno.EOWNERDEAD:
                raise IPCError(f"cannot lock the IPC segment of {self.prefix!r}: "
                               f"{os.strerror(err)}")
            _libc.pthread_mutex_consistent(self._maddr)  # the journal says what to undo
        flushing, jlen = WORD2.unpack_from(self.mm, H_FLUSHING)
        if flushing or jlen:
            self._recover(flushing, jlen)

    def unlock(self) -> None:  # replaced per instance by a partial (see __init__)
        _mutex_unlock_fast(self._mref)

    def save(self, off: int, n: int) -> None:
        """Journal ``n`` bytes at ``off`` before they are changed."""
        mm = self.mm
        jlen = self._jlen
        end = jlen + _JENTRY + n
        if end > self.jsize:
            raise IPCError("IPC journal overflow (an operation touched too much state)")
        j = self.jbase + jlen
        _QI.pack_into(mm, j, off, n)
        j += _JENTRY
        mm[j : j + n] = mm[off : off + n]
        WORD.pack_into(mm, H_JLEN, end)  # the entry exists from this store on
        self._jlen = end

    def commit(self) -> None:
        """The shared state is consistent: forget the journal (one store)."""
        if self._jlen:
            WORD.pack_into(self.mm, H_JLEN, 0)
            self._jlen = 0

    def abort(self) -> None:
        """Undo this process's uncommitted changes (an exception mid-operation)."""
        if self._jlen:
            self._rollback(self._jlen)

    def _rollback(self, jlen: int) -> None:
        mm = self.mm
        entries = []
        pos, end = self.jbase, self.jbase + jlen
        while pos < end:
            off, n = _QI.unpack_from(mm, pos)
            entries.append((off, pos + _JENTRY, n))
            pos += _JENTRY + n
        for off, src, n in reversed(entries):  # oldest copy of a range wins
            mm[off : off + n] = mm[src : src + n]
        WORD.pack_into(mm, H_JLEN, 0)  # idempotent up to here: a crash just redoes it
        self._jlen = 0

    def _recover(self, flushing: int, jlen: int) -> None:
        if jlen:
            self._rollback(jlen)
        (count,) = _Q.unpack_from(self.mm, H_RECOVERIES)
        _Q.pack_into(self.mm, H_RECOVERIES, count + 1)
        if flushing:
            self.flush_locked()

    def flush_locked(self) -> None:
        """Empty everything; idempotent, so a dead flusher's work is redone."""
        raise NotImplementedError

    def pushes(self) -> int:
        """The push counter, read without the lock (a hint only)."""
        return WORD.unpack_from(self.mm, H_PUSHES)[0]

    @property
    def recoveries(self) -> int:
        """How many times a holder repaired a dead holder's half-done work."""
        return _Q.unpack_from(self.mm, H_RECOVERIES)[0]

    # ------------------------------------------------- attached processes
    #
    # A pid table in the header (guarded by the same fcntl lock as creation,
    # which the kernel drops when its holder dies). A killed process leaves
    # its pid behind; readers skip pids that are no longer alive and the next
    # registration reuses the slot. A torn pid write is harmless: at worst a
    # dead-looking slot is reused or a stray pid is listed once.

    def _register_process(self) -> int:
        pid = os.getpid()
        free = -1
        for slot in range(MAX_PROCS):
            (owner,) = _PID.unpack_from(self.mm, H_PROCS + 4 * slot)
            if owner == pid:
                return slot
            if free < 0 and (owner == 0 or not _pid_alive(owner)):
                free = slot
        if free >= 0:
            _PID.pack_into(self.mm, H_PROCS + 4 * free, pid)
        return free  # -1: table full; the process simply goes unlisted

    def _unregister_process(self) -> None:
        slot = getattr(self, "_proc_slot", -1)
        if slot < 0 or getattr(self, "mm", None) is None or self._fd < 0:
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            at = H_PROCS + 4 * slot
            if _PID.unpack_from(self.mm, at)[0] == os.getpid():
                _PID.pack_into(self.mm, at, 0)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._proc_slot = -1

    def attached_pids(self) -> list[int]:
        """Live processes attached to this segment, this one excluded: those in
        the pid table plus any blocked in a receive (the waiter slots)."""
        me = os.getpid()
        pids = {_PID.unpack_from(self.mm, H_PROCS + 4 * slot)[0] for slot in range(MAX_PROCS)}
        for slot in range(MAX_WAITERS):
            owner, claimed = struct.unpack_from("<II", self.mm, H_WAITERS + 8 * slot)
            if claimed:
                pids.add(owner)
        return sorted(pid for pid in pids if pid and pid != me and _pid_alive(pid))

    def detached(self) -> str | None:
        """Why this process no longer shares the segment (it was removed, or
        removed and created anew, in /dev/shm), or None while it does."""
        path = f"/dev/shm{segment_name(self.prefix)}"
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return f"{path} was removed (manage.py chanlite_ipc --remove?)"
        if inode != self._inode:
            return f"{path} was removed and created anew"
        return None

    def close(self) -> None:
        try:
            self._unregister_process()
        except (OSError, ValueError):  # pragma: no cover - closing anyway
            pass
        self._mbuf = self._mref = None  # the ctypes view pins the mapping
        self.__dict__.pop("unlock", None)  # the partial holds _mref too
        mm = getattr(self, "mm", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a memoryview still refers to it; let GC do it
                pass
            self.mm = None
        shm = getattr(self, "_shm", None)
        if shm is not None and self._fd >= 0:
            shm.close_fd()
            self._fd = -1
