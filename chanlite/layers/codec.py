"""The one message codec every layer uses: validation plus msgpack.

Why one codec: a message must look the same whichever layer carried it, so
``str`` stays ``str`` and ``bytes`` stay ``bytes`` at any depth, and what a
receiver gets is never the sender's object (it is decoded from bytes).
Validation happens here, before encoding, so a bad message fails in the
sender's stack frame with the path of the offending key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

import msgpack

__all__ = ["MAX_DEPTH", "encode", "decode", "check_message"]

#: Deepest nesting of dicts and lists a message may have (the message dict
#: itself is level 1). Bounded so that validation and msgpack never recurse
#: into RecursionError or msgpack's own nesting error: a deeper message is a
#: ``TypeError`` naming the path, like any other bad message.
MAX_DEPTH = 100

#: Leaf types: exact types only, so subclasses (IntEnum, str subclasses with
#: custom behaviour) are refused rather than silently flattened.
_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_local = threading.local()


def _fail(path: str, value: Any, why: str) -> NoReturn:
    raise TypeError(
        f"message key {path!r} holds {type(value).__name__} {value!r:.60}: {why}. "
        "Messages may contain only str, bytes, int, float, bool, None, "
        "list and dict with str keys."
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# The walk below is on every send, so it stays lean: no path strings are
# built unless a container is entered, and integer range is left to msgpack
# (it refuses exactly what does not fit in 64 bits; see ``_find_big_int``).


def _too_deep(path: str) -> NoReturn:
    raise TypeError(
        f"message key {path!r} is nested more than {MAX_DEPTH} dicts/lists deep; "
        "flatten the message"
    )


def _check_dict(obj: dict[str, Any], path: str, depth: int = 1) -> None:
    if depth > MAX_DEPTH:
        _too_deep(path)
    for key, value in obj.items():
        if type(key) is not str:
            raise TypeError(
                f"message key {path + '.' if path else ''}{key!r} is a "
                f"{type(key).__name__}: message dict keys must be str"
            )
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is dict:
            _check_dict(value, _join(path, key), depth + 1)
        elif kind is list:
            _check_list(value, _join(path, key), depth + 1)
        else:
            _fail(_join(path, key), value, "unsupported type")


def _check_list(obj: list[Any], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        _too_deep(path)
    for index, value in enumerate(obj):
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is dict:
            _check_dict(value, f"{path}[{index}]", depth + 1)
        elif kind is list:
            _check_list(value, f"{path}[{index}]", depth + 1)
        else:
            _fail(f"{path}[{index}]", value, "unsupported type")


def _find_big_int(obj: Any, path: str) -> None:
    """Raise naming the first integer outside msgpack's 64-bit range."""
    items = obj.items() if type(obj) is dict else enumerate(obj)
    for key, value in items:
        sub = _join(path, str(key)) if type(obj) is dict else f"{path}[{key}]"
        if type(value) is int and not _INT_MIN <= value <= _INT_MAX:
            _fail(sub, value, "integer does not fit in 64 bits")
        if type(value) in (dict, list):
            _find_big_int(value, sub)


def check_message(message: Any) -> None:
    """Raise ``TypeError`` naming the offending key if ``message`` is not sendable."""
    if type(message) is not dict:
        raise TypeError(
            f"a message must be a dict, not {type(message).__name__} ({message!r:.60})"
        )
    _check_dict(message, "")
    _find_big_int(message, "")


def _pack_function() -> Callable[[Any], bytes]:
    # A Packer is reusable (much cheaper than msgpack.packb, which builds
    # one per call) but not shareable between threads: one per thread.
    pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    _local.pack = pack
    return pack


def encode(message: dict[str, Any]) -> bytes:
    """Validate ``message`` and return its msgpack encoding."""
    if type(message) is not dict:
        check_message(message)  # raises
    _check_dict(message, "")
    try:
        pack: Callable[[Any], bytes] = _local.pack
    except AttributeError:
        pack = _pack_function()
    try:
        return pack(message)
    except OverflowError:
        _find_big_int(message, "")  # raises TypeError with the key path
        raise


#: ``decode(data) -> dict``: turn bytes made by :func:`encode` back into a
#: fresh dict (a partial, not a wrapper function: it runs on every receive).
def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not part of a message")


#: (Bytes from elsewhere — a forged queue entry — raise ``ValueError`` or
#: another msgpack error here; the layers drop such entries, see
#: ``BaseChannelLayer.receive``.)
decode = partial(msgpack.unpackb, raw=False, ext_hook=_refuse_ext)
