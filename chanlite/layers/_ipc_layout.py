"""Where everything of an IPC prefix lives: its names in /dev/shm and every
offset, struct format and size inside its segment.

This is the ONLY module that knows the segment's byte layout: the other
``_ipc_*`` modules address fields through the names below, and every size
is derived from the struct that reads or writes it, so a field cannot change
in one place and not another. Pure constants and arithmetic (no I/O).

The segment (one per prefix, fixed size, format ``FORMAT_VERSION``)::

    0      +------------------------------------------------------------+
           | header (HEADER_SIZE = 4096)                                |
           |   0 magic "CHNLTIPC"     8 version u32    16 size u64      |
           |  24 qslots u32  28 gslots u32   32 heap  40 heapsize       |
           |  48 qtable  56 gtable  64 journal  72 journal size (u64s)  |
           |  80 maxord u32  88 recoveries u64                          |
           |  96 flushing u64 | 104 journal length u64  (commit words)  |
           | 112 queues used u32  116 groups used u32  120 pushes u64   |
           | 128 max_channels u32  132 max_groups u32                   |
           | 256 buddy bitmap u64  264 buddy heads u64[64]              |
           | 776 quick heads u64[64]                                    |
           | 1536 waiter slots (pid u32, thread id u32) x MAX_WAITERS   |
           | 2560 robust pthread mutex (<= 64 bytes)                    |
           | 3072 attached pids u32 x MAX_PROCS                         |
    4096   +------------------------------------------------------------+
           | undo journal (jsize): entries (offset u64, length u32,     |
           |   old bytes), appended; length at H_JLEN, 0 = committed    |
    qtable +------------------------------------------------------------+
           | queue table: qslots x ENTRY                                |
    gtable +------------------------------------------------------------+
           | group table: gslots x ENTRY                                |
    heap   +------------------------------------------------------------+
           | heap (page aligned): power-of-two blocks                   |
    size   +------------------------------------------------------------+

A table entry (ENTRY = 160 bytes; 0 hash = empty slot)::

    +0 hash u32  +4 name length u8  +8 head u64  +16 tail u64
    +24 count u32  +28 full count u32  +32 waiter mask (2 x u64)  +48 name

A heap block starts with ``(order u8, flag u8, name length u8, pad,
data length u32)``; then, by kind::

    free (buddy):  +8 next  +16 prev
    free (quick):  +8 next
    message:       +8 next  +16 expires f64   +24 channel name, data
    group member:  +8 next  +16 prev  +24 added f64  +32 channel name
"""

from __future__ import annotations

import re
import struct
from typing import Any, NamedTuple

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
    "Header",
    "check_prefix",
    "layout",
    "read_header",
    "segment_name",
    "semaphore_name",
    "table_slots",
]

MAGIC = b"CHNLTIPC"
#: v2: error-checking mutex, max_channels/max_groups stored as asked
FORMAT_VERSION = 2
MAX_WAITERS = 128  # two 64-bit masks per queue entry
MAX_PROCS = 128
#: the segment's pages: header size, heap alignment, smallest journal and heap
PAGE = 4096
HEADER_SIZE = PAGE
JOURNAL_SIZE = 256 * 1024

# ---- plain fields ------------------------------------------------------------
U8 = struct.Struct("<B")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
U32X2 = struct.Struct("<II")
U64X2 = struct.Struct("<QQ")
#: The journal length and the flush flag are the commit points, read with the
#: native "Q" (one aligned word; "<Q" goes byte by byte). Each must also
#: change in ONE store, which no pack_into does: it zero-fills its target
#: before converting the value, so a process killed in between left a 0.
#: They are stored through one-item memoryviews instead (Journal.word,
#: Store.flushing), which convert the value first.
WORD = struct.Struct("Q")
WORD2 = struct.Struct("QQ")  # (flush flag, journal length) at H_FLUSHING
#: ``WORD2`` of a segment with no operation in progress (nothing to repair)
CLEAN = (0, 0)
#: an attached pid: native, one aligned store, never torn by a kill
PID = struct.Struct("I")

# ---- header ------------------------------------------------------------------
H_MAGIC = 0  # 8s
H_VERSION = 8  # u32 format version
H_SIZE = 16  # u64 segment size
H_QSLOTS = 24  # u32 queue table slots (power of two), then u32 group table slots
H_GSLOTS = 28  # u32 group table slots (power of two)
H_HEAP = 32  # GEOMETRY: heap, heapsize, qtable, gtable, journal, journal size
H_HEAPSIZE = 40  # u64
H_QTABLE = 48  # u64
H_GTABLE = 56  # u64
H_JOURNAL = 64  # u64
H_JSIZE = 72  # u64
H_MAXORD = 80  # u32 largest block order
H_RECOVERIES = 88  # u64 journals rolled back (diagnostics, tests)
H_FLUSHING = 96  # u64 1 while a flush runs (redone by the next holder)
H_JLEN = 104  # u64 bytes of journal in use; 0 = no operation in progress
H_QUSED = 112  # u32 queue entries in use, then u32 group entries in use
H_GUSED = 116  # u32 group entries in use
H_PUSHES = 120  # u64 pushes so far (a hint for spinning receivers; not journaled)
H_QMAX = 128  # u32 max_channels, as configured, then u32 max_groups
H_GMAX = 132  # u32 max_groups, as configured
H_BITMAP = 256  # u64 buddy free lists that are non-empty
H_HEADS = 264  # u64[64] buddy free list heads
H_QHEADS = 776  # u64[64] quick (not coalesced) free list heads
H_WAITERS = 1536  # MAX_WAITERS x WAITER (u32 pid, u32 thread id; 0 = free)
H_MUTEX = 2560  # a process-shared, robust pthread mutex (<= MUTEX_SIZE bytes)
H_PROCS = 3072  # MAX_PROCS x PID: the processes attached (chanlite_ipc --remove)
#: bytes reserved for a pthread_mutex_t (40 on glibc x86-64, 24-40 elsewhere)
MUTEX_SIZE = 64
MAGIC_SIZE = len(MAGIC)

#: heap, heapsize, qtable, gtable, journal offset, journal size at H_HEAP
GEOMETRY = struct.Struct("<QQQQQQ")
#: the waiter slot of one blocked receiver: (pid, thread id; 0 = free)
WAITER = struct.Struct("<II")
#: the buddy bitmap and heads, journaled as one region by the allocator
BUDDY_REGION = H_QHEADS - H_BITMAP
#: what the allocator owns in the header (bitmap, buddy and quick heads)
ALLOC_REGION = (H_BITMAP, H_WAITERS - H_BITMAP)
#: where free list ``k``'s head is (a tuple lookup is as cheap as the sum)
BUDDY_HEAD = tuple(H_HEADS + U64.size * k for k in range(64))
QUICK_HEAD = tuple(H_QHEADS + U64.size * k for k in range(64))
WAITER_AT = tuple(H_WAITERS + WAITER.size * slot for slot in range(MAX_WAITERS))
PROC_AT = tuple(H_PROCS + PID.size * slot for slot in range(MAX_PROCS))
#: journaled ranges lie in the header's journaled part or after the journal
JOURNALED_HEADER = (H_QUSED, H_MUTEX)

# ---- journal -----------------------------------------------------------------
#: an entry's header: (offset u64, length u32), followed by the old bytes
JENTRY = struct.Struct("<QI")
# The hot paths' journal batches, each written with ONE pack_into (entries of
# ``(offset u64, length u32, old bytes)``, exactly what save() would write).
# Old values already unpacked as integers are packed back with the format
# they were read with ("<Q", "<QQIIQQ", "<QQI": no padding), so the saved
# bytes are identical to a copy; block headers are copied as bytes.
#   push: quick-list head (8), reused block (16), queue entry head.. (40)
JPUSH = struct.Struct("<QIQ" "QI16s" "QIQQIIQQ")
#   ... and the old tail's next (8)
JPUSH_TAIL = struct.Struct("<QIQ" "QI16s" "QIQQIIQQ" "QI8s")
#   pop: queue entry head/tail/count (20), quick-list head (8), freed block (16)
JPOP = struct.Struct("<QIQQI" "QIQ" "QI16s")

# ---- table entries -----------------------------------------------------------
#: bytes of one queue or group table entry
ENTRY = 160
E_KEY = 0  # ENTRY_KEY: hash u32 (0 = empty slot), name length u8
ENTRY_KEY = struct.Struct("<IB")
E_HASH = 0
#: head, tail, count, full count, waiter masks at E_LIST
E_LIST = 8
ENTRY_BODY = struct.Struct("<QQIIQQ")
#: head, tail (a list's ends) and count: what unlinking changes
ENTRY_LIST = struct.Struct("<QQI")
E_HEAD = E_LIST
E_TAIL = E_HEAD + U64.size
E_COUNT = E_TAIL + U64.size
E_FULL = E_COUNT + U32.size
E_MASKS = E_FULL + U32.size
ENTRY_MASKS = U64X2
E_NAME = E_MASKS + ENTRY_MASKS.size
MAX_NAME = ENTRY - E_NAME
#: block flags (B_FLAG)
USED, BUDDY_FREE, QUICK_FREE = 0, 1, 2
#: 64-byte blocks: the 24-byte message header plus a short message
MIN_ORDER = 6
#: blocks up to 64 KiB are cached on quick lists (see :mod:`._ipc_alloc`)
QUICK_MAX_ORDER = 16
assert E_LIST + ENTRY_BODY.size == E_NAME == 48

# ---- heap blocks -------------------------------------------------------------
B_ORDER = 0  # u8
B_FLAG = 1  # u8: USED, BUDDY_FREE or QUICK_FREE
B_NAMELEN = 2  # u8: channel name length (messages, members)
B_DLEN = 4  # u32: data length (messages)
B_NEXT = 8  # u64: next block of the list
B_PREV = 16  # u64: previous block (buddy lists, group members)
#: order, flag, name length, data length: the first 8 bytes of every block
BLOCK_HEAD = struct.Struct("<BBBxI")
#: order, flag (written when a block changes hands)
ORDER_FLAG = struct.Struct("<BB")
#: a quick-free block: order, flag, next
QUICK_BLOCK = struct.Struct("<BBxxxxxxQ")
#: what a buddy-list change touches in a free block: header, next, prev
BUDDY_BLOCK_SIZE = BLOCK_HEAD.size + U64X2.size
#: a message block's header: order, flag, name length, data length, next, expires
MESSAGE = struct.Struct("<BBBxIQd")
#: the same without the order byte (written at B_FLAG when a block is reused)
MESSAGE_TAIL = struct.Struct("<BBxIQd")
B_EXPIRES = 16  # f64 (messages)
NEXT_EXPIRES = struct.Struct("<Qd")  # at B_NEXT
MESSAGE_HEAD_SIZE = MESSAGE.size  # channel name, then data, follow
#: a member block after its order byte: flag, name length, 0, next, prev, added
MEMBER_TAIL = struct.Struct("<BBxIQQd")
B_ADDED = 24  # f64 (group members)
NEXT_PREV_ADDED = struct.Struct("<QQd")  # at B_NEXT
MEMBER_HEAD_SIZE = B_FLAG + MEMBER_TAIL.size  # channel name follows
assert MESSAGE_HEAD_SIZE == B_EXPIRES + 8 and MEMBER_HEAD_SIZE == B_ADDED + 8


class Header(NamedTuple):
    """The header's layout fields, parsed in one place (the segment, the
    layer's figures and the tests read them from here)."""

    version: int
    size: int
    qslots: int
    gslots: int
    heap: int
    heapsize: int
    qtable: int
    gtable: int
    jbase: int
    jsize: int
    maxord: int
    qmax: int
    gmax: int


def read_header(mm: Any) -> Header:
    """Parse the header of the mapping ``mm`` (not validated: see the segment)."""
    (version,) = U32.unpack_from(mm, H_VERSION)
    (size,) = U64.unpack_from(mm, H_SIZE)
    qslots, gslots = U32X2.unpack_from(mm, H_QSLOTS)
    heap, heapsize, qtable, gtable, jbase, jsize = GEOMETRY.unpack_from(mm, H_HEAP)
    (maxord,) = U32.unpack_from(mm, H_MAXORD)
    qmax, gmax = U32X2.unpack_from(mm, H_QMAX)
    return Header(version, size, qslots, gslots, heap, heapsize, qtable, gtable, jbase, jsize,
                  maxord, qmax, gmax)


def write_header(mm: Any, h: Header) -> None:
    """Write every layout field of ``h`` (creation; the magic comes last, apart)."""
    U64.pack_into(mm, H_SIZE, h.size)
    U32X2.pack_into(mm, H_QSLOTS, h.qslots, h.gslots)
    GEOMETRY.pack_into(mm, H_HEAP, h.heap, h.heapsize, h.qtable, h.gtable,
                       h.jbase, h.jsize)
    U32.pack_into(mm, H_MAXORD, h.maxord)
    U32X2.pack_into(mm, H_QMAX, h.qmax, h.gmax)
    U32.pack_into(mm, H_VERSION, h.version)


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


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
    heap = (gtable + gslots * ENTRY + PAGE - 1) & ~(PAGE - 1)
    heapsize = size - heap
    return qtable, gtable, heap, heapsize, min(max(heapsize, 1).bit_length() - 1, 62)


def message_order(name_len: int, data_len: int) -> int:
    """The order of the block that holds a message (header, name, data)."""
    return (MESSAGE_HEAD_SIZE - 1 + name_len + data_len).bit_length()


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


def segment_path(prefix: str) -> str:
    """The segment's file (``/dev/shm/chanlite.<prefix>``)."""
    return f"/dev/shm{segment_name(prefix)}"


def semaphore_name(prefix: str, slot: int) -> str:
    """The doorbell of waiter ``slot`` (``/dev/shm/sem.chanlite.<prefix>.w<slot>``)."""
    return f"/chanlite.{prefix}.w{slot}"
