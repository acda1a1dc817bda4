"""``Channel`` and ``Group``: the names users send to, and deferred sends.

A consumer's replies must not escape when the consumer fails half-way (the
client would see a reply to something whose database work was rolled back),
so, as in Channels 1.x, sends made while a consumer runs are *buffered* in a
per-thread store and delivered when the consumer returns. Unlike 1.x, the
buffer is **discarded** when the consumer raises (1.x flushed it anyway), and
a send that still finds the channel full after a short bounded retry is
logged instead of raising out of the worker loop (1.x crashed the worker).
``send(..., immediately=True)`` bypasses the buffer.

A full channel, from the consumer's side:

* ``Channel(...).send(..., immediately=True)`` (and any send outside a
  consumer) raises ``ChannelFull`` to the caller, which decides.
* A deferred send (the default inside a consumer) cannot raise to the
  consumer - it has returned. It waits up to ``FLUSH_RETRY_TIME`` for room
  (woken by the layer's space signal; cross-process layers re-check every
  ``FLUSH_RETRY_INTERVAL``) and is then dropped, counted in one log line per
  interval.
* ``Group(...).send`` never raises: full members are skipped, and the layer
  logs how many, once per interval.

:func:`deferred_sends` is the context manager the worker (and the testing
package) wraps around each consumer call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import DEFAULT_CHANNEL_LAYER
from .interval_log import IntervalLog
from .layers import get_channel_layer

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import BaseChannelLayer

__all__ = ["Channel", "Group", "deferred_sends", "sends_are_deferred"]

logger = logging.getLogger("chanlite.channel")

#: How long a deferred send retries a full channel before giving up (seconds),
#: and how long it waits between attempts. Bounded so one slow consumer of a
#: reply channel cannot stall the worker thread for long.
FLUSH_RETRY_TIME = 2.0
FLUSH_RETRY_INTERVAL = 0.05

_local = threading.local()
_dropped = IntervalLog(
    logger, logging.ERROR,
    "dropped %d deferred send(s)%s: the channel was still full after FLUSH_RETRY_TIME; the "
    "receiver is not keeping up (raise the layer's capacity, or send with "
    "immediately=True and handle ChannelFull yourself); last: %s")


class _Sendable:
    """Shared by Channel and Group: a name plus a lazily resolved layer."""

    def __init__(
        self,
        name: str,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: BaseChannelLayer | None = None,
    ) -> None:
        if isinstance(name, bytes):
            name = name.decode("ascii")
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__} name must be a str, not {name!r:.60}")
        self.name = name
        self.alias = (
            alias if channel_layer is None else (getattr(channel_layer, "alias", None) or alias)
        )
        self._layer = channel_layer

    @classmethod
    def _unnamed(cls, channel_layer: Any = None) -> Any:
        """The ``channel`` of a Message built with ``channel_name=None`` (1.x
        unit tests do that); sending to it fails with an error saying why."""
        self = cls.__new__(cls)
        self.name = None  # type: ignore[assignment]
        self.alias = getattr(channel_layer, "alias", None) or DEFAULT_CHANNEL_LAYER
        self._layer = channel_layer
        return self

    @property
    def channel_layer(self) -> BaseChannelLayer:
        """The layer this sends through (resolved on first use, so a Channel
        can be created at import time before settings are read)."""
        if self._layer is None:
            self._layer = get_channel_layer(self.alias)
        return self._layer

    def send(self, content: dict, immediately: bool = False) -> None:
        """Send ``content``; inside a consumer it is delivered when the
        consumer returns (discarded if it raises) unless ``immediately``."""
        if self.name is None:
            raise ValueError(
                f"this {type(self).__name__} has no name: it is the channel of a Message built "
                "with channel_name=None; build the Message with the channel it arrived on"
            )
        if not isinstance(content, dict):
            raise TypeError(
                f"{type(self).__name__}({self.name!r}).send() takes a dict, not "
                f"{type(content).__name__}"
            )
        store = getattr(_local, "pending", None)
        if immediately or store is None:
            self._send_now(content)
            return
        layer = self.channel_layer
        # Validate now (the error points at the caller's line) and keep a
        # private copy, so later mutation by the caller does not leak in.
        store.append((self, layer.decode(layer.encode(content))))

    def _send_now(self, content: dict) -> None:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, type(self)):
            return self.name == other.name and self.alias == other.alias
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name, self.alias))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} alias={self.alias!r}>"


class Channel(_Sendable):
    """A named FIFO queue on a channel layer: ``Channel("thumbnails").send({...})``.

    ``alias`` picks the layer from ``CHANNEL_LAYERS``; ``channel_layer``
    passes one directly (messages do this for their ``reply_channel``).
    """

    def _send_now(self, content: dict) -> None:
        self.channel_layer.send(self.name, content)


class Group(_Sendable):
    """A named set of channels that all receive what is sent to the group."""

    def add(self, channel: Channel | str) -> None:
        """Add ``channel`` (a Channel or its name); immediate, not deferred."""
        self.channel_layer.group_add(self.name, _channel_name(channel))

    def discard(self, channel: Channel | str) -> None:
        """Remove ``channel``; not an error if it is not a member."""
        self.channel_layer.group_discard(self.name, _channel_name(channel))

    def _send_now(self, content: dict) -> None:
        self.channel_layer.send_group(self.name, content)


def _channel_name(channel: Channel | str) -> str:
    if isinstance(channel, Channel):
        return channel.name
    if isinstance(channel, str):
        return channel
    raise TypeError(f"expected a Channel or a channel name, not {channel!r:.60}")


def sends_are_deferred() -> bool:
    """True while this thread runs inside :func:`deferred_sends`."""
    return getattr(_local, "pending", None) is not None


@contextmanager
def deferred_sends() -> Iterator[list[tuple[_Sendable, dict]]]:
    """Buffer ``send()`` calls of this thread; flush on success, discard on error.

    Nested use joins the outer buffer, so a consumer that calls another
    consumer directly (the demultiplexer does) flushes once, at the end.
    """
    if getattr(_local, "pending", None) is not None:
        yield _local.pending
        return
    pending: list[tuple[_Sendable, dict]] = []
    _local.pending = pending
    try:
        yield pending
    except BaseException:
        _local.pending = None
        if pending:
            logger.debug("discarding %d deferred send(s) of a failed consumer", len(pending))
        raise
    _local.pending = None
    flush(pending)


def flush(pending: list[tuple[_Sendable, Any]]) -> None:
    """Deliver buffered sends in order, retrying full channels briefly.

    A send still refused after ``FLUSH_RETRY_TIME`` is logged and dropped
    (at-most-once delivery allows it) and the rest are still delivered.
    """
    for target, content in pending:
        deadline = time.monotonic() + FLUSH_RETRY_TIME
        while True:
            layer = target.channel_layer
            room = threading.Event()
            try:
                target._send_now(content)
                break
            except layer.ChannelFull:
                # Register, then retry once: a receive in between is not missed.
                complete = layer.call_when_space(target.name, room.set)
                try:
                    target._send_now(content)
                    break
                except layer.ChannelFull:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    _dropped.note(1, f"to {target.name!r}")
                    break
                room.wait(left if complete else min(left, FLUSH_RETRY_INTERVAL))
    pending.clear()
