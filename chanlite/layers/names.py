"""Channel and group name rules, shared by every layer.

ASGI 1.0 names are ASCII letters, digits, ``.``, ``_`` and ``-``, shorter than
100 characters, with at most one ``?`` (single-reader channel) or ``!``
(process-specific channel) part. A process-specific channel ``a!x`` lives in
the queue ``a!``: senders name the full channel, receivers name the prefix.
Validated names are cached because the same few names recur on every call.
"""

from __future__ import annotations

import re
from typing import TypeVar

__all__ = [
    "MAX_NAME_LENGTH",
    "remember",
    "queue_for_send",
    "queue_for_receive",
    "check_group_name",
    "check_new_channel_pattern",
]

MAX_NAME_LENGTH = 100
_BODY = r"[A-Za-z0-9._-]+"
_SEND = re.compile(rf"({_BODY})(?:([?!]){_BODY})?")
_RECEIVE = re.compile(rf"{_BODY}(?:\?{_BODY}|!)?")
_GROUP = re.compile(_BODY)
_RULE = (
    "names are str, shorter than 100 characters, made of ASCII letters, digits, "
    "'.', '_' and '-', with at most one '?' or '!' part"
)


def _check_str(name: object, what: str) -> str:
    if type(name) is not str:
        raise TypeError(f"{what} name must be a str, not {type(name).__name__} ({name!r:.60})")
    if len(name) >= MAX_NAME_LENGTH:
        raise TypeError(f"{what} name {name[:40]!r}... is {len(name)} characters; {_RULE}")
    return name


V = TypeVar("V")


def remember(cache: dict[str, V], name: str, value: V, limit: int) -> V:
    """Store ``cache[name] = value`` and return ``value``; a cache holding
    ``limit`` entries is emptied first.

    The one bounded cache of the layers (names -> queue, capacity, shard,
    segment key). Why a plain dict and not ``functools.lru_cache``: a hit is
    ``cache.get(name)`` inlined on the hot path, the whole cost of a name seen
    before (a handful of names recur on every call), where an LRU would pay a
    call and its bookkeeping on every hit. Why clear rather than evict one:
    only a stream of ever-new names (``new_channel()`` replies) fills it, and
    those do not recur, so the few live names come back at their next use.
    """
    if len(cache) >= limit:
        cache.clear()
    cache[name] = value
    return value


# Valid names -> their queue. Only valid names are stored, so a hit means
# "valid".
_CACHE_LIMIT = 8192
_send_queues: dict[str, str] = {}
_receive_queues: dict[str, str] = {}


def _parse_send(name: object) -> str:
    name = _check_str(name, "channel")
    match = _SEND.fullmatch(name)
    if match is None:
        if name.endswith(("!", "?")):
            raise TypeError(
                f"cannot send to {name!r}: a name ending in '!' or '?' is a pattern; "
                f"get a real channel name from layer.new_channel({name!r})"
            )
        raise TypeError(f"invalid channel name {name!r}: {_RULE}")
    queue = match.group(1) + "!" if match.group(2) == "!" else name
    return remember(_send_queues, name, queue, _CACHE_LIMIT)


def queue_for_send(name: object) -> str:
    """Validate a name for ``send``/``group_add`` and return the queue holding it.

    ``"a!x"`` is queued in ``"a!"``; every other name is its own queue.
    """
    if type(name) is str:
        queue = _send_queues.get(name)
        if queue is not None:
            return queue
    return _parse_send(name)


def _parse_receive(name: object) -> str:
    name = _check_str(name, "channel")
    if _RECEIVE.fullmatch(name) is None:
        if "!" in name and _SEND.fullmatch(name) is not None:
            prefix = name.split("!", 1)[0] + "!"
            raise TypeError(
                f"cannot receive from {name!r}: process-specific channels are "
                f"received through their prefix, receive([{prefix!r}])"
            )
        raise TypeError(f"invalid channel name {name!r} for receive: {_RULE}")
    return remember(_receive_queues, name, name, _CACHE_LIMIT)


def queue_for_receive(name: object) -> str:
    """Validate a name passed to ``receive`` (a channel or an ``a!`` prefix)."""
    if type(name) is str:
        queue = _receive_queues.get(name)
        if queue is not None:
            return queue
    return _parse_receive(name)


def check_group_name(name: object) -> str:
    """Validate a group name (no ``?`` or ``!`` part)."""
    name = _check_str(name, "group")
    if _GROUP.fullmatch(name) is None:
        raise TypeError(
            f"invalid group name {name!r}: group names are shorter than 100 characters "
            "and made of ASCII letters, digits, '.', '_' and '-'"
        )
    return name


def check_new_channel_pattern(pattern: object) -> str:
    """Validate the argument of ``new_channel`` (``"name?"`` or ``"name!"``)."""
    _check_str(pattern, "channel")
    if not (
        isinstance(pattern, str)
        and pattern[-1:] in ("?", "!")
        and _GROUP.fullmatch(pattern[:-1]) is not None
    ):
        raise TypeError(
            f"new_channel() takes a pattern like 'name?' or 'name!', not {pattern!r}"
        )
    return pattern
