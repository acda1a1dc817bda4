"""The ASGI 1.0 channel-layer API, written once for every layer.

:class:`BaseChannelLayer` owns the *rules*: name and message validation, the
msgpack codec, the size limit, capacities (``capacity`` and glob/regex
``channel_capacity``), expiry deadlines computed from an injectable clock,
group membership expiry, fair rotation over several channels, and the error
types. A concrete layer implements only *storage*: a handful of ``_hooks``
that push encoded bytes into a queue, pop them, block, and keep group and
statistics records. That way no layer re-implements (and subtly changes) the
semantics, and one property-test state machine checks them all.

Storage hooks receive validated queue names: a process-specific channel
``"a!x"`` is stored in queue ``"a!"`` together with its full name, so
``receive(["a!"])`` returns ``("a!x", message)`` and the channel counts
toward the capacity of ``"a!"``.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..interval_log import IntervalLog
from . import codec
from .names import (
    check_group_name,
    check_new_channel_pattern,
    queue_for_receive,
    queue_for_send,
    remember,
)

__all__ = ["BaseChannelLayer", "ChannelFull", "MessageTooLarge", "Clock", "PROTOCOL_CHANNELS"]

log = logging.getLogger("chanlite.layers")
#: Undecodable entries one ``receive`` drops before it gives up with
#: ``(None, None)`` (each is logged; a real sender never makes one).
MAX_DROPPED = 100

Clock = Callable[[], float]
#: The channels an interface server sends client traffic to. Their default
#: capacity is ``protocol_capacity`` (sized for one message in flight per
#: connection the server allows), not the per-channel ``capacity``.
PROTOCOL_CHANNELS = frozenset({
    "http.request", "http.disconnect",
    "websocket.connect", "websocket.receive", "websocket.disconnect",
})
#: Queues whose capacity is remembered (names.remember) before the cache restarts.
_CAPACITY_CACHE_LIMIT = 10000
_encode = codec.encode
_decode = codec.decode
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class ChannelFull(Exception):
    """The channel is at capacity; the message was not queued.

    Raised by ``send`` so that a producer can apply back-pressure (an
    interface server answers 503). ``send_group`` never raises it: full
    members are skipped.
    """


class MessageTooLarge(ValueError):
    """The encoded message is above the layer's ``max_message_size``."""


CapacitySpec = Mapping["str | re.Pattern[str]", int] | Iterable[tuple["str | re.Pattern[str]", int]]


def _compile_capacities(spec: CapacitySpec | None) -> list[tuple[re.Pattern[str], int]]:
    """Turn ``{"http.request": 200, "http.response!*": 10, re.compile(...): 5}``
    into ``[(regex, capacity)]``; string keys are globs, first match wins."""
    if spec is None:
        return []
    items = spec.items() if isinstance(spec, Mapping) else spec
    compiled = []
    for pattern, capacity in items:
        if isinstance(pattern, re.Pattern):
            regex = pattern
        elif isinstance(pattern, str):
            regex = re.compile(fnmatch.translate(pattern))
        else:
            raise TypeError(
                f"channel_capacity keys must be glob strings or compiled regexes, "
                f"not {type(pattern).__name__} ({pattern!r})"
            )
        _check_positive_int(f"channel_capacity[{pattern!r}]", capacity)
        compiled.append((regex, capacity))
    return compiled


def _check_positive_int(what: str, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{what} must be a positive int, not {value!r}")


def _check_positive_number(what: str, value: Any) -> None:
    if type(value) not in (int, float) or not value > 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")



class BaseChannelLayer:
    """Shared behaviour of all chanlite channel layers (ASGI 1.0 API).

    Parameters:
        expiry: seconds a queued message stays deliverable; after that it is
            never delivered.
        group_expiry: seconds a group membership lasts after its last
            ``group_add``.
        capacity: default maximum number of queued messages per channel
            (per ``a!`` prefix for process-specific channels).
        channel_capacity: ``{glob_or_regex: capacity}`` overriding
            ``capacity`` (and ``process_capacity``) for matching queue names;
            first match wins.
        process_capacity: capacity of each process-specific queue ``a!``.
            Every reply channel of one interface server shares its ``a!``
            queue, so one group send to N connections of that server queues
            N messages at once; a per-channel figure would make such a
            broadcast skip members, hence a larger default.
        protocol_capacity: capacity of the channels an interface server
            sends client traffic to (:data:`PROTOCOL_CHANNELS`): 10 000, the
            server's default connection limit, so every connection can have a
            message in flight before back-pressure starts.
        max_message_size: maximum encoded message size in bytes.
        clock: a callable returning seconds as a float; used for expiry and
            group expiry so tests can drive time with a fake clock.
    """

    extensions = ["groups", "flush", "statistics"]
    #: The CHANNEL_LAYERS alias this layer was built for (set by the registry).
    alias: str | None = None
    ChannelFull = ChannelFull
    MessageTooLarge = MessageTooLarge

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: CapacitySpec | None = None,
        max_message_size: int = 1024 * 1024,
        clock: Clock | None = None,
        process_capacity: int = 10_000,
        protocol_capacity: int = 10_000,
    ) -> None:
        _check_positive_number("expiry", expiry)
        _check_positive_number("group_expiry", group_expiry)
        _check_positive_int("capacity", capacity)
        _check_positive_int("process_capacity", process_capacity)
        _check_positive_int("protocol_capacity", protocol_capacity)
        _check_positive_int("max_message_size", max_message_size)
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        self.expiry = expiry
        self.group_expiry = group_expiry
        self.capacity = capacity
        self.process_capacity = process_capacity
        self.protocol_capacity = protocol_capacity
        self.channel_capacity = _compile_capacities(channel_capacity)
        self.max_message_size = max_message_size
        self.clock: Clock = clock or time.time
        self._capacity_cache: dict[str, int] = {}
        self._rotation = itertools.count()
        # "space available" signal: queue -> one-shot callbacks (call_when_space)
        self._space_waiters: dict[str, list[Callable[[], None]]] = {}
        self._space_lock = threading.Lock()
        self._skips = IntervalLog(
            log, logging.WARNING,
            "group sends skipped %d full member(s)%s (those clients are not reading fast "
            "enough, or their server is behind); last: %s")
        self._blocked = 0
        self._blocked_lock = threading.Lock()

    # ------------------------------------------------------------------ rules

    def capacity_for(self, queue: str) -> int:
        """The capacity of a queue (a channel name, or an ``a!`` prefix)."""
        try:
            return self._capacity_cache[queue]
        except KeyError:
            pass
        if queue.endswith("!"):
            capacity = self.process_capacity
        elif queue in PROTOCOL_CHANNELS:
            capacity = self.protocol_capacity
        else:
            capacity = self.capacity
        for regex, value in self.channel_capacity:
            if regex.fullmatch(queue):
                capacity = value
                break
        return remember(self._capacity_cache, queue, capacity, _CAPACITY_CACHE_LIMIT)

    def encode(self, message: dict[str, Any]) -> bytes:
        """Validate and encode ``message``; raise ``MessageTooLarge`` if too big."""
        data = _encode(message)
        if len(data) > self.max_message_size:
            raise self.MessageTooLarge(
                f"message is {len(data)} bytes encoded, above max_message_size="
                f"{self.max_message_size}; send large payloads in chunks or raise "
                "max_message_size in the layer CONFIG"
            )
        return data

    decode = staticmethod(codec.decode)

    def _receive_queues(self, channels: Sequence[str]) -> list[str]:
        """Validate ``channels`` and rotate them so that no channel starves."""
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise TypeError(
                f"receive() takes a list of channel names, not {type(channels).__name__} "
                f"({channels!r:.60})"
            )
        if len(channels) == 1:
            return [queue_for_receive(channels[0])]
        if not channels:
            raise TypeError("receive() needs at least one channel name")
        queues = list(dict.fromkeys(queue_for_receive(name) for name in channels))
        shift = next(self._rotation) % len(queues)
        return queues[shift:] + queues[:shift]

    @staticmethod
    def _check_timeout(block: bool, timeout: float | None) -> None:
        if timeout is not None and (type(timeout) not in (int, float) or timeout < 0):
            raise ValueError(f"timeout must be None or seconds >= 0, not {timeout!r}")

    # ------------------------------------------------------------ public API

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``.

        Raises ``ChannelFull`` when the channel holds ``capacity`` unexpired
        messages and ``MessageTooLarge`` above ``max_message_size``.
        """
        queue = queue_for_send(channel)
        data = self.encode(message)
        # (the cache lookup inlined: send is the hottest path of every layer)
        capacity = self._capacity_cache.get(queue) or self.capacity_for(queue)
        now = self.clock()
        if not self._push(queue, channel, data, now + self.expiry, capacity, now):
            raise self.ChannelFull(
                f"channel {channel!r} is full ({capacity} messages queued); consumers "
                "are not keeping up. Raise 'capacity' or 'channel_capacity' in the "
                "layer CONFIG, or add workers"
            )

    def receive(
        self, channels: Sequence[str], block: bool = False, timeout: float | None = None
    ) -> tuple[str, dict[str, Any]] | tuple[None, None]:
        """Return ``(channel, message)`` from one of ``channels``, or ``(None, None)``.

        With ``block=True`` wait (without polling) until a message arrives
        or ``timeout`` seconds pass (``None``: wait forever). A prefix such as
        ``"a!"`` receives every ``"a!..."`` channel and returns the full name.
        """
        if type(channels) is list and len(channels) == 1:  # fast path, same checks
            queues = [queue_for_receive(channels[0])]
        else:
            queues = self._receive_queues(channels)
        if timeout is not None:
            self._check_timeout(block, timeout)
        got = self._receive_counted(queues, bool(block), timeout)
        deadline = None
        dropped = 0
        while True:
            if got is None:
                return None, None
            channel = got[0]
            if self._space_waiters:
                self._space_freed(channel)
            try:
                message = _decode(got[1])
            except Exception as exc:  # noqa: BLE001 - any decoding failure is a forged entry
                message = exc
            if type(message) is dict:
                return channel, message
            # Not a message this codec made (a bug, or an entry forged into the
            # store): log it and go on receiving until ``timeout`` as if it had
            # never been there. Never hand the caller a non-dict or a raw error.
            what = (f"undecodable ({type(message).__name__}: {message})"
                    if isinstance(message, Exception) else
                    f"a {type(message).__name__}, not a dict")
            log.error("%r: dropped an entry on channel %r that is %s", self, channel, what)
            dropped += 1
            if dropped > MAX_DROPPED:
                log.error("%r: %d undecodable entries in a row; giving up this receive",
                          self, dropped)
                return None, None
            if timeout is not None and deadline is None:
                deadline = time.monotonic() + timeout
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            got = self._receive_counted(queues, bool(block), remaining)

    def _receive_counted(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        """The storage hook, with this thread counted in :attr:`blocked_receivers`
        while it blocks (non-blocking receives skip the counter's lock)."""
        if not block:
            return self._receive(queues, False, timeout)
        with self._blocked_lock:
            self._blocked += 1
        try:
            return self._receive(queues, True, timeout)
        finally:
            with self._blocked_lock:
                self._blocked -= 1

    # "space available" signal

    #: True when every receive from this layer's queues goes through this
    #: object (one process: the in-memory layer), so :meth:`call_when_space`
    #: sees every message taken. Cross-process layers only see their own
    #: process's receives: callers must also retry on a timer.
    space_signal_complete = False

    def call_when_space(self, channel: str, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` once, after the next message is taken off
        ``channel``'s queue by this object (or on :meth:`flush`).

        Interface servers use it to resume a connection whose channel was
        full instead of polling. The callback runs in the receiving thread,
        after the layer's lock is released: it must only hand work over
        (e.g. ``loop.call_soon_threadsafe``). Register *before* re-trying the
        send that failed, or a message taken in between is missed. Returns
        :attr:`space_signal_complete`: False means receives in other
        processes do not signal, so retry on a timer as well.
        """
        queue = queue_for_send(channel)
        with self._space_lock:
            self._space_waiters.setdefault(queue, []).append(callback)
        return self.space_signal_complete

    def discard_space_callback(self, channel: str, callback: Callable[[], None]) -> None:
        """Forget a :meth:`call_when_space` registration that is no longer
        wanted (e.g. a request's body channel its client abandoned, which
        nobody may ever receive from again)."""
        queue = queue_for_send(channel)
        with self._space_lock:
            callbacks = self._space_waiters.get(queue)
            if callbacks is not None:
                try:
                    callbacks.remove(callback)
                except ValueError:
                    pass
                if not callbacks:
                    del self._space_waiters[queue]

    def _space_freed(self, channel: str) -> None:
        queue = queue_for_send(channel)
        with self._space_lock:
            callbacks = self._space_waiters.pop(queue, None)
        for callback in callbacks or ():
            try:
                callback()
            except Exception:  # a waiter's bug must not break the receiver
                log.exception("space-available callback for %r failed", queue)

    def _space_freed_all(self) -> None:
        with self._space_lock:
            waiting, self._space_waiters = self._space_waiters, {}
        for callbacks in waiting.values():
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    log.exception("space-available callback failed")

    def detached(self) -> str | None:
        """Why this layer can no longer reach the others (e.g. the IPC segment
        was removed), or None. Workers poll it and exit instead of serving a
        layer nobody else sees; most layers can never be detached."""
        return None

    def new_channel(self, pattern: str) -> str:
        """Return a fresh, unique channel name for ``"name?"`` or ``"name!"``."""
        check_new_channel_pattern(pattern)
        # 20 characters from ``secrets`` (~119 bits): a body channel or reply
        # channel must not be guessable by a client that sees its neighbours.
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(20))
        name = pattern + token
        queue_for_send(name)  # the result must be a valid name (length)
        return name

    # groups extension

    def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (or refresh its membership)."""
        check_group_name(group)
        queue_for_send(channel)
        self._group_add(group, channel, self.clock())

    def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; not an error if absent."""
        check_group_name(group)
        queue_for_send(channel)
        self._group_discard(group, channel)

    def group_channels(self, group: str) -> list[str]:
        """The unexpired members of ``group``, in the order they joined."""
        check_group_name(group)
        return self._group_members(group, self.clock() - self.group_expiry)

    def send_group(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member; full members are skipped.

        Skipped members are counted (``channel_full_count``) and logged as a
        count, at most one line per 10 s per layer (never one per member).
        """
        check_group_name(group)
        data = self.encode(message)
        now = self.clock()
        members = self._group_members(group, now - self.group_expiry)
        if members:
            skipped = self._push_many(members, data, now + self.expiry, now)
            if skipped:
                self._skips.note(skipped, f"group {group!r}, {skipped} of {len(members)}")

    # flush extension

    def flush(self) -> None:
        """Remove every message, group and statistic of this layer."""
        self._flush()
        if self._space_waiters:
            self._space_freed_all()

    # statistics extension

    def global_statistics(self) -> dict[str, int]:
        """``{"messages_pending": queued messages, "channel_full_count": refusals}``."""
        pending, full = self._global_stats(self.clock())
        return {"messages_pending": pending, "channel_full_count": full}

    def channel_statistics(self, channel: str) -> dict[str, float | int]:
        """Queue figures for ``channel`` (a name, or an ``a!`` prefix).

        ``messages_pending`` unexpired messages queued, ``capacity``,
        ``channel_full_count`` sends refused as full since the last flush, and
        ``messages_max_age`` seconds the oldest pending message has waited.
        """
        queue = queue_for_receive(channel)
        now = self.clock()
        pending, oldest_expires, full = self._queue_stats(queue, now)
        age = 0.0 if oldest_expires is None else max(0.0, now - (oldest_expires - self.expiry))
        return {
            "messages_pending": pending,
            "capacity": self.capacity_for(queue),
            "channel_full_count": full,
            "messages_max_age": age,
        }

    @property
    def blocked_receivers(self) -> int:
        """Threads of this process now inside ``receive(block=True)`` on this
        layer object (waiting, or about to). Lets a test start senders only
        once its receivers block, instead of sleeping and hoping."""
        return self._blocked

    # --------------------------------------------------- storage (subclasses)

    # ``now`` is the clock reading ``expires`` was computed from (``now +
    # expiry``): both are handed over, so that no layer recomputes one from
    # the other (in floating point ``now + e - e`` need not equal ``now``).

    def _push(self, queue: str, channel: str, data: bytes, expires: float, capacity: int,
              now: float) -> bool:
        """Append ``(channel, data)`` to ``queue`` unless it holds ``capacity``
        messages unexpired at ``now``; on refusal count it for statistics and
        return False."""
        raise NotImplementedError

    def _push_many(self, channels: list[str], data: bytes, expires: float, now: float) -> int:
        """Group delivery: push ``data`` to each channel, skipping full ones;
        return how many were skipped."""
        skipped = 0
        for channel in channels:
            queue = queue_for_send(channel)
            if not self._push(queue, channel, data, expires, self.capacity_for(queue), now):
                skipped += 1
        return skipped

    def _receive(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        """Pop the oldest unexpired message of the first non-empty queue in
        order (dropping expired ones), blocking as asked."""
        raise NotImplementedError

    def _group_add(self, group: str, channel: str, now: float) -> None:
        raise NotImplementedError

    def _group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError

    def _group_members(self, group: str, added_after: float) -> list[str]:
        """Members added after ``added_after``; older ones are expired (drop them)."""
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _queue_stats(self, queue: str, now: float) -> tuple[int, float | None, int]:
        """``(pending, expiry time of the oldest pending or None, full count)``."""
        raise NotImplementedError

    def _global_stats(self, now: float) -> tuple[int, int]:
        """``(pending messages in all queues, full count in all queues)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} expiry={self.expiry} capacity={self.capacity}>"
