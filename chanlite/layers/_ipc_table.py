"""A hash table of the IPC segment: queue or group names to fixed entries.

Open addressing with linear probing and backward-shift deletion, so no
tombstones pile up. An entry (``ENTRY`` bytes, layout in
:mod:`._ipc_layout`) holds the name's hash and length, the ends and length
of a list of heap blocks, a full counter and the waiters' bit masks. The
store holds two: the queue table and the group table. The caller holds the
lock; every change is journaled.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from . import _ipc_layout as _layout
from ._ipc_errors import IPCCorrupt, IPCMemoryFull
from ._ipc_journal import Journal
from ._ipc_layout import (
    E_COUNT,
    E_HASH,
    E_KEY,
    E_LIST,
    E_NAME,
    ENTRY,
)

# The structs are bound by assignment, not imported by name: CPython 3.11
# compiles ``NAME.unpack_from(...)`` on an imported NAME (expecting a module)
# as an attribute load plus a call of a new bound method instead of a method
# call, ~25 ns more per pack/unpack (10 % of a push or pop).
ENTRY_KEY = _layout.ENTRY_KEY
U32 = _layout.U32

__all__ = ["Table", "name_key"]

_HASH = U32.size


def name_key(name: str) -> tuple[bytes, int]:
    """``(ascii bytes, non-zero hash)``: the same in every process (crc32, not hash())."""
    data = name.encode("ascii")
    return data, zlib.crc32(data) or 1


class Table:
    """One hash table at ``base`` with ``slots`` entries (a power of two).

    ``used_at`` is the header counter of entries in use, ``limit`` the most
    entries allowed (the configured ``setting``, e.g. ``max_channels``) and
    ``what`` names the entries in errors ("channels", "groups").
    """

    def __init__(self, mm: Any, base: int, slots: int, used_at: int, limit: int,
                 what: str, setting: str, journal: Journal,
                 corrupt: Callable[[str], IPCCorrupt], prefix: str) -> None:
        self.mm: Any = mm
        self.base = base
        self.slots = slots
        self.mask = slots - 1
        self.used_at = used_at
        self.limit = limit
        self.what = what
        self.setting = setting
        self.journal = journal
        self.corrupt = corrupt
        self.prefix = prefix

    def entry(self, index: int) -> int:
        """The offset of entry ``index``."""
        return self.base + index * ENTRY

    def home(self, key: bytes, h: int) -> int:
        """The entry of ``key`` if it sits in its home slot (almost always), else 0."""
        mm = self.mm
        e = self.base + (h & self.mask) * ENTRY
        if ENTRY_KEY.unpack_from(mm, e) == (h, len(key)) and (
                mm[e + E_NAME : e + E_NAME + len(key)] == key):
            return e
        return 0

    def find(self, key: bytes, h: int) -> int:
        """The entry of ``key``, or minus the empty slot where it would go."""
        mm = self.mm
        mask = self.mask
        i = h & mask
        n = len(key)
        for _ in range(mask + 1):
            e = self.base + i * ENTRY
            eh, en = ENTRY_KEY.unpack_from(mm, e)
            if eh == 0:
                return -e
            if eh == h and en == n and mm[e + E_NAME : e + E_NAME + n] == key:
                return e
            i = (i + 1) & mask
        raise self.corrupt("a hash table has no empty slot")  # it is at most 3/4 full

    def name(self, e: int) -> bytes:
        """The name stored in entry ``e``."""
        n = ENTRY_KEY.unpack_from(self.mm, e)[1]
        return bytes(self.mm[e + E_NAME : e + E_NAME + n])

    def used(self) -> int:
        """Entries in use (the header counter)."""
        count: int = U32.unpack_from(self.mm, self.used_at)[0]
        return count

    def crowded(self) -> bool:
        """Delete empty entries only once a quarter of the table is used:
        below that they cost nothing, and a channel that is emptied and
        refilled all the time (the common case) keeps its entry."""
        used: int = U32.unpack_from(self.mm, self.used_at)[0]
        return used * 4 > self.slots

    def count(self, e: int) -> int:
        """The length of entry ``e``'s list."""
        count: int = U32.unpack_from(self.mm, e + E_COUNT)[0]
        return count

    def insert(self, e: int, key: bytes, h: int) -> int:
        """Use the empty slot ``e`` (from :meth:`find`) for ``key``."""
        mm = self.mm
        used_at = self.used_at
        (used,) = U32.unpack_from(mm, used_at)
        if used >= self.limit:
            raise IPCMemoryFull(
                f"the IPC layer (prefix {self.prefix!r}) already holds {used} {self.what}; "
                f"raise '{self.setting}' in the layer CONFIG (then remove the old segment: "
                "manage.py chanlite_ipc --remove)"
            )
        save = self.journal.save
        save(used_at, U32.size)
        U32.pack_into(mm, used_at, used + 1)
        save(e + E_KEY, E_LIST - E_KEY)  # the key word (hash, length, padding)
        mm[e : e + ENTRY] = bytes(ENTRY)
        mm[e + E_NAME : e + E_NAME + len(key)] = key
        ENTRY_KEY.pack_into(mm, e, h, len(key))  # the hash last: the slot is now used
        return e

    def delete(self, e: int) -> None:
        """Backward-shift deletion: later entries of the cluster move up."""
        mm = self.mm
        base, mask, used_at = self.base, self.mask, self.used_at
        save = self.journal.save
        save(used_at, U32.size)
        U32.pack_into(mm, used_at, U32.unpack_from(mm, used_at)[0] - 1)
        i = j = (e - base) // ENTRY
        for _ in range(mask + 1):
            j = (j + 1) & mask
            ej = base + j * ENTRY
            (hj,) = U32.unpack_from(mm, ej + E_HASH)
            if hj == 0:
                break
            home = hj & mask
            if (i < home <= j) if i < j else (home > i or home <= j):
                continue  # j's home lies between the hole and j: it must stay
            ei = base + i * ENTRY
            save(ei, ENTRY)
            mm[ei : ei + ENTRY] = mm[ej : ej + ENTRY]
            i = j
        else:
            raise self.corrupt("a hash table has no empty slot")
        ei = base + i * ENTRY
        save(ei + E_HASH, _HASH)
        U32.pack_into(mm, ei + E_HASH, 0)
