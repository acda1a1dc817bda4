"""chanlite's shared-memory IPC layer for Channels 4 projects.

``pip install chanlite[channels4]`` and set::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "chanlite.channels4.IPCChannelLayer",
        "CONFIG": {"prefix": "mysite"},
    }}

Every process on the host with the same ``prefix`` (``uvicorn --workers 4``,
two Daphne processes, ``runworker``) shares channels and groups without Redis.

Why it looks like this:

* the store is :class:`chanlite.layers.ipc.IPCChannelLayer` itself (one
  instance inside, same segment, same crash safety, same limits); this class
  only adapts Channels 4's async API and name rules to it;
* a waiting ``receive`` holds neither a thread nor a timer: one dispatcher
  thread per layer (:mod:`._dispatch`) blocks on the store's doorbell for
  every queue that has awaiting coroutines and hands what it pops to their
  event loops; a queue nobody waits on is popped directly, without a thread
  hop;
* a popped message is never dropped: if its receiver was cancelled it stays
  first in line for the next ``receive`` of that channel, and ``close()``
  puts what is still undelivered back into the shared store.
"""

from __future__ import annotations

try:
    from channels.exceptions import ChannelFull as _ChannelsFull
    from channels.layers import BaseChannelLayer as _ChannelsBase
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "chanlite.channels4 needs Django Channels 4: pip install 'chanlite[channels4]'"
    ) from exc

import asyncio
import os
import secrets
import string
from typing import Any

from ..layers import base as _base
from ..layers import ipc as _ipc
from ..layers.names import queue_for_receive
from ._dispatch import Dispatcher

__all__ = ["ChannelFull", "IPCChannelLayer"]

_ALPHABET = string.ascii_letters + string.digits


class ChannelFull(_ChannelsFull, _base.ChannelFull):
    """The channel is at capacity: Channels 4's exception (and chanlite's)."""


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


class IPCChannelLayer(_ChannelsBase):
    """A Channels 4 channel layer on chanlite's POSIX shared-memory store.

    Parameters: ``prefix`` (names the segment; processes with the same
    prefix share it), Channels' ``expiry``, ``group_expiry``, ``capacity``,
    ``channel_capacity``, and the IPC store's own keywords (``memory``,
    ``max_channels``, ``max_groups``, ``process_capacity``, ``spin``,
    ``max_message_size``, ``clock``): see
    :class:`chanlite.layers.ipc.IPCChannelLayer` and docs/channels4.md.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        prefix: str = "chanlite",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Any = None,
        spin: float = 0.0,
        **config: Any,
    ) -> None:
        # spin 0 by default: only the dispatcher thread blocks, and a thread
        # spinning for the GIL next to the event loop delays the loop.
        self.ipc = _ipc.IPCChannelLayer(
            prefix=prefix,
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            spin=spin,
            **config,
        )
        self.ipc.ChannelFull = ChannelFull  # send() raises Channels' exception
        self.prefix = self.ipc.prefix
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        # Channels' get_capacity() reads compiled (regex, capacity) pairs.
        self.channel_capacity = self.ipc.channel_capacity
        self._pid = os.getpid()
        self._client = _token(12)
        self._dispatch = Dispatcher(self.ipc, self._client)

    def _fresh(self) -> Dispatcher:
        """The dispatcher of this process (a forked child gets its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._client = _token(12)
            self._dispatch = Dispatcher(self.ipc, self._client)
        return self._dispatch

    # -------------------------------------------------------------- core API

    async def send(self, channel: str, message: dict) -> None:
        """Queue ``message`` on ``channel``; raises ``ChannelFull`` at capacity."""
        self._check_message(message)
        self.require_valid_channel_name(channel)
        self.ipc.send(channel, message)

    async def receive(self, channel: str) -> dict:
        """The next message on ``channel``, waiting (without a thread) for one.

        ``channel`` is a normal name or a full process-local name
        (``specific.abc!xyz``) returned by :meth:`new_channel`.
        """
        self.require_valid_channel_name(channel)
        queue = self.non_local_name(channel)
        queue_for_receive(queue)  # chanlite's stricter (ASCII) rules
        return self.ipc.decode(await self._fresh().receive(channel, queue))

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A fresh process-local channel name, ``<prefix><client>!<token>``."""
        name = f"{prefix}{self._fresh().client}!{_token(12)}"
        self.require_valid_channel_name(name)
        return name

    # ------------------------------------------------------------ extensions

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.ipc.group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.ipc.group_discard(group, channel)

    async def group_send(self, group: str, message: dict) -> None:
        """Send to every unexpired member; full members are skipped."""
        self._check_message(message)
        self.require_valid_group_name(group)
        self.ipc.send_group(group, message)

    async def flush(self) -> None:
        """Remove every message and group of this prefix (all processes)."""
        self._fresh().forget_buffered()
        self.ipc.flush()

    async def close(self) -> None:
        """Stop the dispatcher, give undelivered messages back to the store
        and detach from the segment (which stays for the other processes)."""
        await asyncio.get_running_loop().run_in_executor(None, self.close_sync)

    def close_sync(self) -> None:
        """:meth:`close` for synchronous code (test teardown, atexit)."""
        if self.ipc._store is None:
            return
        if self._pid == os.getpid():
            self._dispatch.stop()
        self.ipc.close()

    # ------------------------------------------------------------- helpers

    @staticmethod
    def _check_message(message: Any) -> None:
        if not isinstance(message, dict):
            raise TypeError(f"a message must be a dict, not {type(message).__name__}")
        if "__asgi_channel__" in message:
            raise TypeError("'__asgi_channel__' is reserved and may not be in a message")

    def __repr__(self) -> str:
        return f"<chanlite.channels4.IPCChannelLayer prefix={self.prefix!r}>"
