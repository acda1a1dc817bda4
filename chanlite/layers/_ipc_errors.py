"""The IPC layer's exceptions, in one place so that every ``_ipc_*`` module
(and :mod:`.ipc`, which re-exports them) can raise them without importing
the segment itself."""

from __future__ import annotations

from .base import ChannelFull

__all__ = [
    "IPCCorrupt",
    "IPCError",
    "IPCFormatError",
    "IPCLockTimeout",
    "IPCMemoryFull",
    "IPCPermissionError",
]


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
