"""One :class:`._ipc_store.Store` per prefix per process, shared by every
``IPCChannelLayer`` on that prefix: one mapping, one doorbell cache and one
journal cursor (used only by the thread holding the mutex). Reference
counted, so the last layer to close a prefix unmaps it.
"""

from __future__ import annotations

import os
import threading

from ._ipc_store import Store

__all__ = ["close_store", "forget_store", "open_store"]

_registry: dict[str, tuple[Store, int]] = {}
_registry_lock = threading.Lock()


def open_store(prefix: str, memory: int, max_channels: int, max_groups: int, mode: int) -> Store:
    """One Store per prefix per process: one mapping, one doorbell cache and
    one journal cursor (used only by the thread holding the mutex)."""
    with _registry_lock:
        store, refs = _registry.get(prefix, (None, 0))
        if store is None:
            store = Store(prefix, memory, max_channels, max_groups, mode=mode)
        _registry[prefix] = (store, refs + 1)
        return store


def close_store(prefix: str) -> None:
    """One layer on ``prefix`` closed: unmap the store when it was the last."""
    with _registry_lock:
        store, refs = _registry.get(prefix, (None, 0))
        if store is None:
            return
        if refs > 1:
            _registry[prefix] = (store, refs - 1)
        else:
            del _registry[prefix]
            store.close()


def _after_fork_in_child() -> None:
    # A forked child inherits the mapping; a registry lock copied while held
    # would deadlock it, and the journal cursor belongs to the parent.
    global _registry_lock
    _registry_lock = threading.Lock()
    for store, _ in _registry.values():
        store.journal.jlen = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def forget_store(prefix: str) -> None:
    """Drop ``prefix``'s store whatever its references (it is being removed)."""
    with _registry_lock:
        entry = _registry.pop(prefix, None)
    if entry is not None:
        entry[0].close()

