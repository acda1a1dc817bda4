"""The IPC segment's undo journal: what makes every operation atomic.

Before a word of shared state is changed its old bytes are appended to the
journal and the journal length (one 8-byte store at ``H_JLEN``) is bumped;
the operation commits by storing 0 into that length. A lock holder that
finds a non-zero length knows the previous holder died mid-operation and
copies the old bytes back, newest first. Memory that was free before the
operation (a new message body) is not journaled: rolling the allocator back
makes it free again.

The hot paths of :mod:`._ipc_queues` write a whole batch of entries with one
``pack_into`` at the journal's end and then store the new length through
:attr:`Journal.word`: the bytes are exactly what :meth:`Journal.save` would
have written.

The length is never stored with ``struct.pack_into``: CPython's packer
zero-fills its target before it converts the value, so a process killed in
between left a length of 0 -- "committed" -- on a half-done operation, and
the next holder skipped the rollback (the SIGKILL chaos test's rare leaked
block). :attr:`Journal.word` is a one-item ``"Q"`` memoryview of the word:
assigning to it converts the value first, then stores the 8 bytes at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _ipc_layout as _layout
from ._ipc_errors import IPCCorrupt, IPCError
from ._ipc_layout import (
    H_JLEN,
    H_RECOVERIES,
    JOURNALED_HEADER,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
JENTRY = _layout.JENTRY
U64 = _layout.U64
WORD = _layout.WORD

__all__ = ["Journal"]

_JENTRY_SIZE = JENTRY.size


class Journal:
    """The undo journal at ``jbase`` (``jsize`` bytes) of a mapped segment.

    ``jlen`` mirrors the length in the segment for the thread holding the
    lock (the only one that may write); the segment's word is the truth
    after a crash or an exception (:meth:`abort`).
    """

    def __init__(self, mm: Any, jbase: int, jsize: int, qtable: int, size: int,
                 corrupt: Callable[[str], IPCCorrupt]) -> None:
        self.mm: Any = mm
        self.jbase = jbase
        self.jsize = jsize
        #: journaled ranges after the journal: from the tables to the end
        self._data = (qtable, size)
        self.corrupt = corrupt
        #: bytes in use, as this process last wrote them (lock holder only)
        self.jlen = 0
        #: the commit word (the length at H_JLEN) as a one-item memoryview:
        #: ``word[0] = n`` is the ONLY way to store it (see the module docstring)
        self.word: memoryview = memoryview(mm)[H_JLEN : H_JLEN + WORD.size].cast("Q")

    def close(self) -> None:
        """Release the view of the commit word (it pins the mapping)."""
        self.word.release()

    def save(self, off: int, n: int) -> None:
        """Journal ``n`` bytes at ``off`` before they are changed."""
        mm = self.mm
        jlen = self.jlen
        end = jlen + _JENTRY_SIZE + n
        if end > self.jsize:
            raise IPCError("IPC journal overflow (an operation touched too much state)")
        j = self.jbase + jlen
        JENTRY.pack_into(mm, j, off, n)
        j += _JENTRY_SIZE
        mm[j : j + n] = mm[off : off + n]
        self.word[0] = end  # the entry exists from this store on
        self.jlen = end

    def commit(self) -> None:
        """The shared state is consistent: forget the journal (one store)."""
        if self.jlen:
            self.word[0] = 0
            self.jlen = 0

    def abort(self) -> None:
        """Undo this thread's uncommitted changes (an exception mid-operation).

        The journal length in the segment, not ``jlen``, says what to undo:
        an exception may strike between the two stores that update them.
        """
        (jlen,) = WORD.unpack_from(self.mm, H_JLEN)
        if jlen:
            self.rollback(jlen)
        self.jlen = 0

    def rollback(self, jlen: int) -> None:
        """Copy the old bytes of ``jlen`` bytes of journal back, newest first."""
        mm = self.mm
        entries = []
        pos, end = self.jbase, self.jbase + jlen
        if jlen > self.jsize:
            raise self.corrupt(f"its journal length {jlen} exceeds the journal")
        low, high = JOURNALED_HEADER
        start, stop = self._data
        while pos < end:
            off, n = JENTRY.unpack_from(mm, pos)
            if not n or pos + _JENTRY_SIZE + n > end or not (
                low <= off and off + n <= high or start <= off and off + n <= stop
            ):
                raise self.corrupt(f"its journal holds a bad entry ({n} bytes at {off})")
            entries.append((off, pos + _JENTRY_SIZE, n))
            pos += _JENTRY_SIZE + n
        for off, src, n in reversed(entries):  # oldest copy of a range wins
            mm[off : off + n] = mm[src : src + n]
        self.word[0] = 0  # idempotent up to here: a crash just redoes it
        self.jlen = 0

    def count_recovery(self) -> None:
        """One more dead holder's work repaired (diagnostics, tests)."""
        (count,) = U64.unpack_from(self.mm, H_RECOVERIES)
        U64.pack_into(self.mm, H_RECOVERIES, count + 1)

    @property
    def recoveries(self) -> int:
        """How many times a holder repaired a dead holder's half-done work."""
        count: int = U64.unpack_from(self.mm, H_RECOVERIES)[0]
        return count
