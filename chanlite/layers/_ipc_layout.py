"""Where everything of an IPC prefix lives: its names in /dev/shm and, in
its segment, the magic, format version, header offsets, the commit words
and the table/heap layout.

Pure constants and arithmetic (no I/O), shared by the segment, its lock
(:mod:`._ipc_mutex`), the allocator, the store and the diagnostics. The
segment's design is described in :mod:`._ipc_segment`.
"""

from __future__ import annotations

import re
import struct

__all__ = [
    "ALLOC_REGION",
    "CLEAN",
    "ENTRY",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "JOURNAL_SIZE",
    "MAGIC",
    "MAX_PROCS",
    "MAX_WAITERS",
    "WORD",
    "WORD2",
    "check_prefix",
    "layout",
    "segment_name",
    "semaphore_name",
    "table_slots",
]

MAGIC = b"CHNLTIPC"
#: v2: error-checking mutex, max_channels/max_groups stored as asked
FORMAT_VERSION = 2
MAX_WAITERS = 128  # two 64-bit masks per queue entry

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


_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
