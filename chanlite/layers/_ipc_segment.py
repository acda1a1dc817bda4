"""The shared-memory segment of the IPC layer: layout, lock and undo journal.

Why this shape (see docs/architecture.md, "IPC layer"):

* **One segment per prefix**, ``/dev/shm/chanlite.<prefix>``, of fixed size.
  Everything lives in it at fixed offsets: a header (magic, format version,
  layout, allocator state, waiter slots), an undo journal, the queue table,
  the group table and the heap of message blocks. No pickling, no resizing.
* **The mutex is a robust, process-shared pthread mutex in the header**
  (:mod:`._ipc_mutex`). When its holder dies the kernel hands it to the next
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
* **An exception is as harmless as a SIGKILL.** Every critical section ends
  in ``except BaseException: raise segment.failed(exc)``: whichever line a
  KeyboardInterrupt, SystemExit or error hits, :meth:`Segment.failed` asks
  the mutex (an *error-checking* one) whether this thread holds it, and if
  so rolls the journal back and unlocks. Nothing relies on a Python
  variable being set at the moment of the exception.
* **Nothing waits forever on a lock nobody can release.** A busy mutex is
  waited for in one-second slices; between them the holder's thread id
  (in the mutex's futex word) is looked up: a holder that does not exist
  means a corrupt segment (:class:`IPCCorrupt`), and with ``lock_timeout``
  the wait ends with :class:`IPCLockTimeout` ("locked by pid N for X s").
* **A segment is trusted only if this user made it:** created with
  ``O_EXCL`` and the configured mode, and on open refused unless owned by
  this uid with no permission bits beyond that mode; its header is checked
  against the layout it implies (:class:`IPCCorrupt` otherwise).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import functools
import logging
import mmap
import os
import re
import stat
import struct
import threading
import time
import weakref

import posix_ipc

from ._ipc_mutex import (
    LOCK_SLICE,
    LOCK_SPINS,
    LOCK_WARN_AFTER,
    LOCK_WORD,
    MUTEX_SIZE,
    TID_MASK,
    deadline_in,
    init_mutex,
    mutex_consistent,
    mutex_timedlock,
    mutex_trylock,
    mutex_unlock,
    thread_pid,
)
from .base import ChannelFull

__all__ = [
    "CLEAN",
    "FORMAT_VERSION",
    "WORD",
    "WORD2",
    "MAGIC",
    "DEFAULT_MODE",
    "IPCCorrupt",
    "IPCError",
    "IPCFormatError",
    "IPCLockTimeout",
    "IPCMemoryFull",
    "IPCPermissionError",
    "Segment",
    "check_prefix",
    "remove_prefix",
    "segment_name",
    "semaphore_name",
]

logger = logging.getLogger("chanlite.layers.ipc")

MAGIC = b"CHNLTIPC"
#: v2: error-checking mutex, max_channels/max_groups stored as asked
FORMAT_VERSION = 2
#: permission bits of a new segment and its doorbells (``mode`` in CONFIG)
DEFAULT_MODE = 0o600
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
H_QMAX = 128  # u32 max_channels, as configured
H_GMAX = 132  # u32 max_groups, as configured
H_BITMAP = 256  # u64 buddy free lists that are non-empty
H_HEADS = 264  # u64[64] buddy free list heads
H_QHEADS = 776  # u64[64] quick (not coalesced) free list heads
H_WAITERS = 1536  # MAX_WAITERS x (u32 pid, u32 thread id; 0 = free)
H_MUTEX = 2560  # a process-shared, robust pthread mutex (<= MUTEX_SIZE bytes)
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


#: the segment's mutex (see :mod:`._ipc_mutex`), at a fixed place in the header
_LOCK_WORD = H_MUTEX + LOCK_WORD
#: what reading garbage bytes raises (struct, mmap indexing, decoding, the
#: diagnostics' assertions): from a critical section, a corrupt segment
_GARBAGE_ERRORS = (struct.error, IndexError, ValueError, OverflowError, AssertionError)


class IPCError(Exception):
    """The IPC layer's shared memory cannot be created or used."""


class IPCFormatError(IPCError):
    """The segment was written by another chanlite IPC format version."""


class IPCCorrupt(IPCError):
    """The segment's contents are not a valid chanlite IPC store.

    Its header does not match the layout it describes, a table or list
    points outside it, the journal cannot be rolled back, or its lock is
    held by a thread that does not exist. Nothing is guessed or repaired:
    stop the processes on the prefix and remove the segment.
    """


class IPCPermissionError(IPCError, PermissionError):
    """The segment or a doorbell belongs to another user or is more widely
    accessible than the layer's ``mode``: it may have been planted."""


class IPCLockTimeout(IPCError, TimeoutError):
    """The segment stayed locked by a live process for ``lock_timeout``."""


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
        try:
            posix_ipc.unlink_shared_memory(segment_name(prefix))
        except posix_ipc.ExistentialError:
            existed = False
        for slot in range(MAX_WAITERS):
            try:
                posix_ipc.unlink_semaphore(semaphore_name(prefix, slot))
            except posix_ipc.ExistentialError:
                pass
    except posix_ipc.PermissionsError as exc:  # /dev/shm is sticky: another user's file
        raise IPCPermissionError(f"cannot remove IPC prefix {prefix!r}: {exc} (another "
                                 "user's file: remove it as that user or root)") from None
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


#: bytes of one queue or group table entry (layout in :mod:`._ipc_store`)
ENTRY = 160
JOURNAL_SIZE = 256 * 1024


def table_slots(max_channels: int, max_groups: int) -> tuple[int, int]:
    """Hash table sizes for the limits: at most 3/4 full, powers of two."""
    return (_pow2_at_least(max_channels * 4 // 3 + 1), _pow2_at_least(max_groups * 4 // 3 + 1))


def layout(size: int, qslots: int, gslots: int, jsize: int) -> tuple[int, int, int, int, int]:
    """``(qtable, gtable, heap, heapsize, maxord)`` of a segment: the header,
    the journal, both tables and a page-aligned heap, in that order. Used to
    create a segment, to check one before creating it and to validate the
    header of an existing one."""
    qtable = HEADER_SIZE + jsize
    gtable = qtable + qslots * ENTRY
    heap = (gtable + gslots * ENTRY + 4095) & ~4095
    heapsize = size - heap
    return qtable, gtable, heap, heapsize, min(max(heapsize, 1).bit_length() - 1, 62)


def _check_trust(st: os.stat_result, what: str, mode: int) -> None:
    """Refuse a file another user made or that others may access beyond ``mode``."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise IPCPermissionError(
            f"{what} belongs to uid {st.st_uid}, not to this process's uid {uid}: "
            "another user may have planted it to read or forge messages. Remove it "
            "(as its owner or root) or choose another 'prefix'"
        )
    wider = stat.S_IMODE(st.st_mode) & ~mode
    if wider:
        raise IPCPermissionError(
            f"{what} has mode {stat.S_IMODE(st.st_mode):04o}, wider than the layer's "
            f"mode {mode:04o} (extra bits {wider:04o}): others could read or forge "
            "messages. Remove it (stop the processes, then manage.py chanlite_ipc "
            "--remove) or set 'mode' in the layer CONFIG"
        )


def _describe_holder(tid: int, pid: int | None, waited: float, path: str) -> str:
    return (
        f"{path}: segment locked by pid {pid} for {waited:.1f}s (by its thread {tid}); "
        f"if that process is stuck, stop it (kill {pid}): the next locker then undoes "
        "its half-done operation"
    )


#: every open segment, so that interpreter shutdown can release a lock the
#: main thread still holds (see _release_at_exit)
_open_segments: weakref.WeakSet = weakref.WeakSet()


class Segment:
    """A mapped segment with its cross-process lock and undo journal.

    Subclasses (the allocator and the store) call :meth:`save` before every
    change to shared state, and :meth:`commit` when the state is consistent.
    """

    #: waiter bits collected by pushes under the lock, rung after unlocking
    rings = 0
    #: seconds a lock wait on a live holder may last before IPCLockTimeout;
    #: None waits (logging every LOCK_WARN_AFTER s) as long as the holder lives
    lock_timeout: float | None = None

    def __init__(
        self,
        prefix: str,
        memory: int,
        max_channels: int,
        max_groups: int,
        journal_size: int = JOURNAL_SIZE,
        mode: int = DEFAULT_MODE,
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.mode = mode
        self.path = f"/dev/shm{segment_name(prefix)}"
        self._shm, created = self._open()
        self._fd = self._shm.fd
        try:
            self._creation_lock(fcntl.LOCK_EX)
            try:
                size = os.fstat(self._fd).st_size
                if size == 0:  # new, or its creator died before reserving it
                    self._reserve(memory)
                    size = memory
                elif size < HEADER_SIZE:
                    raise self.corrupt(f"the file is only {size} bytes (truncated?)")
                self.mm = mmap.mmap(self._fd, size)
                magic = bytes(self.mm[H_MAGIC : H_MAGIC + 8])
                if magic == bytes(8):  # new, or its creator died while initialising it
                    self._initialise(size, max_channels, max_groups, journal_size)
                elif magic != MAGIC:
                    raise IPCFormatError(
                        f"{self.path} is not a chanlite IPC segment; choose another 'prefix'"
                    )
                self._check_version()
                self._load_layout()
                self._validate(size)
                # under the creation lock, which also guards the pid table
                self._proc_slot = self._register_process()
                self._inode = os.fstat(self._fd).st_ino
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        except BaseException:
            if created:  # a constructor that fails leaves nothing behind
                try:
                    posix_ipc.unlink_shared_memory(segment_name(prefix))
                except posix_ipc.ExistentialError:
                    pass
            self.close()
            raise
        self._jlen = 0
        self._mbuf = (ctypes.c_char * MUTEX_SIZE).from_buffer(self.mm, H_MUTEX)
        self._maddr = ctypes.addressof(self._mbuf)
        self._mref = ctypes.byref(self._mbuf)  # keeps _mbuf (and the mapping) alive
        #: ``unlock()``: one C call, no Python frame (it never blocks or fails
        #: for the owner; called on every operation)
        self.unlock = functools.partial(mutex_unlock, self._mref)
        _open_segments.add(self)

    # ---------------------------------------------------------- creation

    def _open(self) -> tuple[posix_ipc.SharedMemory, bool]:
        """Create the segment exclusively (O_EXCL) with exactly ``mode``, or
        open an existing one that this uid owns with no wider mode."""
        name = segment_name(self.prefix)
        for _ in range(5):  # it may be removed between the two attempts
            try:
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=self.mode)
            except posix_ipc.ExistentialError:
                pass
            else:
                os.fchmod(shm.fd, self.mode)  # the configured bits, whatever the umask
                return shm, True
            try:
                shm = posix_ipc.SharedMemory(name, 0)
            except posix_ipc.ExistentialError:
                continue
            except posix_ipc.PermissionsError as exc:
                raise IPCPermissionError(
                    f"{self.path} exists but this process may not open it ({exc}): it "
                    "belongs to another user; remove it (as its owner or root) or choose "
                    "another 'prefix'"
                ) from None
            try:
                _check_trust(os.fstat(shm.fd), self.path, self.mode)
            except BaseException:
                shm.close_fd()
                raise
            return shm, False
        raise IPCError(f"{self.path} keeps appearing and disappearing; is another process "
                       "removing it in a loop?")

    def _creation_lock(self, how: int, limit: float = 30.0) -> None:
        """The fcntl lock that serialises creation, waited for at most ``limit`` s."""
        deadline = time.monotonic() + limit
        while True:
            try:
                fcntl.lockf(self._fd, how | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise IPCLockTimeout(
                    f"{self.path} has been being created by another process for {limit:.0f}s; "
                    "if that process is stuck, stop it and remove the segment"
                )
            time.sleep(0.005)

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
        qslots, gslots = table_slots(max_channels, max_groups)
        qtable, gtable, heap, heapsize, maxord = layout(size, qslots, gslots, jsize)
        if heap + 4096 > size:
            raise ValueError(
                f"memory={size} is too small for max_channels={max_channels} and "
                f"max_groups={max_groups} (tables need {heap} bytes); raise 'memory'"
            )
        mm[0:heap] = bytes(heap)
        _Q.pack_into(mm, H_SIZE, size)
        struct.pack_into("<II", mm, H_QSLOTS, qslots, gslots)
        struct.pack_into("<QQQQQQ", mm, H_HEAP, heap, heapsize, qtable, gtable, HEADER_SIZE, jsize)
        struct.pack_into("<I", mm, H_MAXORD, maxord)
        struct.pack_into("<II", mm, H_QMAX, max_channels, max_groups)
        struct.pack_into("<I", mm, H_VERSION, FORMAT_VERSION)
        self._load_layout()
        self._jlen = 0
        self.reset_heap()
        view = (ctypes.c_char * MUTEX_SIZE).from_buffer(mm, H_MUTEX)
        err = init_mutex(ctypes.addressof(view))
        view = None  # release the export so the mapping can be closed
        if err:
            raise IPCError(f"cannot create the IPC layer's mutex: {os.strerror(err)}")
        mm[H_MAGIC : H_MAGIC + 8] = MAGIC  # last: the segment is now valid

    def _check_version(self) -> None:
        (version,) = struct.unpack_from("<I", self.mm, H_VERSION)
        if version != FORMAT_VERSION:
            raise IPCFormatError(
                f"{self.path} uses chanlite IPC format "
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
        self.qmax, self.gmax = struct.unpack_from("<II", mm, H_QMAX)

    def _validate(self, size: int) -> None:
        """The header must describe exactly the layout its own sizes imply."""
        def bad_slots(n: int) -> bool:
            return n < 2 or n > 1 << 22 or n & (n - 1)

        problem = None
        if self.size != size:
            problem = f"its header says {self.size} bytes but the file has {size} (truncated?)"
        elif bad_slots(self.qslots) or bad_slots(self.gslots):
            problem = f"bad table sizes {self.qslots}/{self.gslots}"
        elif not 4096 <= self.jsize < size or self.jbase != HEADER_SIZE:
            problem = f"bad journal position {self.jbase}+{self.jsize}"
        elif (self.qtable, self.gtable, self.heap, self.heapsize, self.maxord) != layout(
                size, self.qslots, self.gslots, self.jsize) or self.heapsize < 4096:
            problem = "its table and heap offsets do not match its sizes"
        elif not (1 <= self.qmax <= self.qslots * 3 // 4
                  and 1 <= self.gmax <= self.gslots * 3 // 4):
            problem = f"bad limits max_channels={self.qmax} max_groups={self.gmax}"
        else:
            flushing, jlen = WORD2.unpack_from(self.mm, H_FLUSHING)
            qused, gused = struct.unpack_from("<II", self.mm, H_QUSED)
            if flushing > 1 or jlen > self.jsize or qused > self.qslots or gused > self.gslots:
                problem = "its journal or table counters are out of range"
        if problem:
            raise self.corrupt(problem)

    def corrupt(self, problem: str) -> IPCCorrupt:
        """The error for a segment whose contents cannot be trusted."""
        return IPCCorrupt(
            f"{self.path} is corrupt: {problem}. Stop every process using prefix "
            f"{self.prefix!r}, then run `manage.py chanlite_ipc --prefix {self.prefix} "
            "--remove` (queued messages are lost)"
        )

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
        err = mutex_trylock(self._mref)
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
            ref = self._mref
            for _ in range(LOCK_SPINS):
                err = mutex_trylock(ref)
                if err != errno.EBUSY:
                    break
            else:
                err = self._wait_lock()
        if err:
            if err == errno.EOWNERDEAD:
                mutex_consistent(self._maddr)  # the journal says what to undo
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
            self._recover(flushing, jlen)

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
            err = mutex_timedlock(self._maddr, deadline_in(wait))
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
        tid = struct.unpack_from("<I", self.mm, _LOCK_WORD)[0] & TID_MASK
        return (tid, thread_pid(tid)) if tid else (0, None)

    def unlock(self) -> None:  # replaced per instance by a partial (see __init__)
        mutex_unlock(self._mref)

    def failed(self, exc: BaseException) -> BaseException:
        """Clean up after ``exc`` escaped a critical section; return what to raise.

        Every critical section is ``try: lock; ...; unlock  except
        BaseException as exc: raise seg.failed(exc)``, so an exception at
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
        mm = self.mm
        if mm is None or self._mref is None:
            return False
        err = mutex_timedlock(self._maddr, deadline_in(None))  # in the past: never sleeps
        if err == errno.EDEADLK:  # held by this thread
            self.rings = 0  # the operation is undone: nothing to ring
            try:
                self.abort()
            except Exception:  # noqa: BLE001 - a corrupt journal: the next holder reports it
                logger.exception("%s: cannot roll back an interrupted operation", self.path)
            finally:
                self.unlock()
            return True
        if err in (0, errno.EOWNERDEAD):  # it was free (or its holder died): give it back
            if err:
                mutex_consistent(self._maddr)  # the journal stays for the next holder
            self.unlock()
        return False

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
        """Undo this thread's uncommitted changes (an exception mid-operation).

        The journal length in the segment, not ``_jlen``, says what to undo:
        an exception may strike between the two stores that update them.
        """
        (jlen,) = WORD.unpack_from(self.mm, H_JLEN)
        if jlen:
            self._rollback(jlen)
        self._jlen = 0

    def _rollback(self, jlen: int) -> None:
        mm = self.mm
        entries = []
        pos, end = self.jbase, self.jbase + jlen
        if jlen > self.jsize:
            raise self.corrupt(f"its journal length {jlen} exceeds the journal")
        while pos < end:
            off, n = _QI.unpack_from(mm, pos)
            if not n or pos + _JENTRY + n > end or not (
                H_QUSED <= off and off + n <= H_MUTEX or self.qtable <= off and off + n <= self.size
            ):
                raise self.corrupt(f"its journal holds a bad entry ({n} bytes at {off})")
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
        _open_segments.discard(self)
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


def _release_at_exit() -> None:
    """Interpreter shutdown: release a lock the main thread still holds, before
    non-daemon threads (which may wait for it) are joined."""
    for segment in list(_open_segments):
        try:
            segment.release_if_held()
        except Exception:  # noqa: BLE001 - never block the exit
            logger.exception("releasing %s at exit", segment.path)


try:  # before threading joins non-daemon threads (as concurrent.futures does)
    threading._register_atexit(_release_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    atexit.register(_release_at_exit)
