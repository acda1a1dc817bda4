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
import stat
import struct
import threading
import time
import weakref

import posix_ipc

# Names defined in the modules split out of this one stay importable from
# here (``from ._ipc_segment import H_JLEN, IPCError, ...``).
from ._ipc_errors import (  # noqa: F401
    IPCCorrupt,
    IPCError,
    IPCFormatError,
    IPCLockTimeout,
    IPCMemoryFull,
    IPCPermissionError,
)
from ._ipc_layout import (  # noqa: F401
    _JENTRY,
    _Q,
    _QI,
    CLEAN,
    ENTRY,
    FORMAT_VERSION,
    H_BITMAP,
    H_FLUSHING,
    H_GUSED,
    H_HEADS,
    H_HEAP,
    H_JLEN,
    H_MAGIC,
    H_MAXORD,
    H_MUTEX,
    H_PUSHES,
    H_QHEADS,
    H_QMAX,
    H_QSLOTS,
    H_QUSED,
    H_RECOVERIES,
    H_SIZE,
    H_VERSION,
    H_WAITERS,
    HEADER_SIZE,
    JOURNAL_SIZE,
    MAGIC,
    MAX_WAITERS,
    WORD,
    WORD2,
    check_prefix,
    layout,
    segment_name,
    semaphore_name,
    table_slots,
)
from ._ipc_mutex import _LOCK_WORD, MUTEX_SIZE, SegmentLock, init_mutex, mutex_unlock  # noqa: F401
from ._ipc_procs import ProcessTable

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

#: permission bits of a new segment and its doorbells (``mode`` in CONFIG)
DEFAULT_MODE = 0o600


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



#: every open segment, so that interpreter shutdown can release a lock the
#: main thread still holds (see _release_at_exit)
_open_segments: weakref.WeakSet = weakref.WeakSet()


class Segment(SegmentLock, ProcessTable):
    """A mapped segment with its cross-process lock and undo journal.

    Subclasses (the allocator and the store) call :meth:`save` before every
    change to shared state, and :meth:`commit` when the state is consistent.
    The lock methods (``lock``, ``unlock``, ``failed``, ``release_if_held``,
    ``holder``) come from :class:`._ipc_mutex.SegmentLock`, the attached-pid
    table (``attached_pids``, ``detached``) from :class:`._ipc_procs.ProcessTable`.
    """

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

    # ------------------------------------------------------------ journal

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
