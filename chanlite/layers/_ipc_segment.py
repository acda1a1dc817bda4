"""The shared-memory segment of the IPC layer: the file, its mapping and header.

The store (:mod:`._ipc_store`) composes it with the lock
(:mod:`._ipc_mutex`), the undo journal (:mod:`._ipc_journal`), the
allocator, the tables and the groups; the byte layout is in
:mod:`._ipc_layout`.

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
  in ``except BaseException: raise lock.failed(exc)``: whichever line a
  KeyboardInterrupt, SystemExit or error hits, ``SegmentLock.failed`` asks
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

import ctypes
import errno
import fcntl
import mmap
import os
import stat
import time
from collections.abc import Callable
from typing import Any

import posix_ipc

from . import _ipc_layout as _layout
from ._ipc_errors import (
    IPCCorrupt,
    IPCError,
    IPCFormatError,
    IPCLockTimeout,
    IPCPermissionError,
)
from ._ipc_layout import (
    FORMAT_VERSION,
    H_FLUSHING,
    H_MAGIC,
    H_MUTEX,
    H_QUSED,
    HEADER_SIZE,
    JOURNAL_SIZE,
    MAGIC,
    MAGIC_SIZE,
    MAX_WAITERS,
    MUTEX_SIZE,
    PAGE,
    Header,
    check_prefix,
    layout,
    read_header,
    segment_name,
    segment_path,
    semaphore_name,
    table_slots,
    write_header,
)
from ._ipc_mutex import init_mutex
from ._ipc_procs import ProcessTable

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
U32X2 = _layout.U32X2
WORD2 = _layout.WORD2

__all__ = [
    "DEFAULT_MODE",
    "Segment",
    "check_trust",
    "remove_prefix",
]

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


def check_trust(st: os.stat_result, what: str, mode: int) -> None:
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


class Segment(ProcessTable):
    """A mapped, validated segment: the file, its header and its pid table.

    ``carve(header)`` makes a new segment's heap free (the allocator's job)
    before the magic is written. The header's layout fields are attributes
    (``size``, ``qslots``, ``heap``, ``jbase``...; see :class:`Header`).
    The attached-pid table (``attached_pids``, ``detached``) comes from
    :class:`._ipc_procs.ProcessTable`.
    """

    header: Header

    def __init__(
        self,
        prefix: str,
        memory: int,
        max_channels: int,
        max_groups: int,
        carve: Callable[[Any, Header], None],
        journal_size: int = JOURNAL_SIZE,
        mode: int = DEFAULT_MODE,
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.mode = mode
        self.path = segment_path(prefix)
        self.mm: Any = None
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
                magic = bytes(self.mm[H_MAGIC : H_MAGIC + MAGIC_SIZE])
                if magic == bytes(MAGIC_SIZE):  # new, or its creator died initialising it
                    self._initialise(size, max_channels, max_groups, journal_size, carve)
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
                check_trust(os.fstat(shm.fd), self.path, self.mode)
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

    def _initialise(self, size: int, max_channels: int, max_groups: int, jsize: int,
                    carve: Callable[[Any, Header], None]) -> None:
        mm = self.mm
        qslots, gslots = table_slots(max_channels, max_groups)
        qtable, gtable, heap, heapsize, maxord = layout(size, qslots, gslots, jsize)
        if heap + PAGE > size:
            raise ValueError(
                f"memory={size} is too small for max_channels={max_channels} and "
                f"max_groups={max_groups} (tables need {heap} bytes); raise 'memory'"
            )
        mm[0:heap] = bytes(heap)  # the header, the journal and both tables: empty
        header = Header(FORMAT_VERSION, size, qslots, gslots, heap, heapsize, qtable, gtable,
                        HEADER_SIZE, jsize, maxord, max_channels, max_groups)
        write_header(mm, header)
        carve(mm, header)
        view = (ctypes.c_char * MUTEX_SIZE).from_buffer(mm, H_MUTEX)
        err = init_mutex(ctypes.addressof(view))
        del view  # release the export so the mapping can be closed
        if err:
            raise IPCError(f"cannot create the IPC layer's mutex: {os.strerror(err)}")
        mm[H_MAGIC : H_MAGIC + MAGIC_SIZE] = MAGIC  # last: the segment is now valid

    def _check_version(self) -> None:
        version = read_header(self.mm).version
        if version != FORMAT_VERSION:
            raise IPCFormatError(
                f"{self.path} uses chanlite IPC format "
                f"v{version} but this chanlite uses v{FORMAT_VERSION}: stop every "
                f"process using prefix {self.prefix!r}, then run `manage.py chanlite_ipc "
                f"--prefix {self.prefix} --remove` (or use another 'prefix')"
            )

    def _load_layout(self) -> None:
        h = self.header = read_header(self.mm)
        self.size = h.size
        self.qslots, self.gslots = h.qslots, h.gslots
        self.heap, self.heapsize = h.heap, h.heapsize
        self.qtable, self.gtable = h.qtable, h.gtable
        self.jbase, self.jsize = h.jbase, h.jsize
        self.maxord = h.maxord
        self.qmax, self.gmax = h.qmax, h.gmax

    def _validate(self, size: int) -> None:
        """The header must describe exactly the layout its own sizes imply."""
        def bad_slots(n: int) -> bool:
            return bool(n < 2 or n > 1 << 22 or n & (n - 1))

        problem = None
        if self.size != size:
            problem = f"its header says {self.size} bytes but the file has {size} (truncated?)"
        elif bad_slots(self.qslots) or bad_slots(self.gslots):
            problem = f"bad table sizes {self.qslots}/{self.gslots}"
        elif not PAGE <= self.jsize < size or self.jbase != HEADER_SIZE:
            problem = f"bad journal position {self.jbase}+{self.jsize}"
        elif (self.qtable, self.gtable, self.heap, self.heapsize, self.maxord) != layout(
                size, self.qslots, self.gslots, self.jsize) or self.heapsize < PAGE:
            problem = "its table and heap offsets do not match its sizes"
        elif not (1 <= self.qmax <= self.qslots * 3 // 4
                  and 1 <= self.gmax <= self.gslots * 3 // 4):
            problem = f"bad limits max_channels={self.qmax} max_groups={self.gmax}"
        else:
            flushing, jlen = WORD2.unpack_from(self.mm, H_FLUSHING)
            qused, gused = U32X2.unpack_from(self.mm, H_QUSED)
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

    def close(self) -> None:
        """Unregister this process and unmap (a view still exported: GC does it)."""
        try:
            self._unregister_process()
        except (OSError, ValueError):  # pragma: no cover - closing anyway
            pass
        mm = self.mm
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
