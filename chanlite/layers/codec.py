"""The one message codec every layer uses: validation plus msgpack.

Why one codec: a message must look the same whichever layer carried it, so
``str`` stays ``str`` and ``bytes`` stay ``bytes`` at any depth, and what a
receiver gets is never the sender's object (it is decoded from bytes).
Validation happens here, before encoding, so a bad message fails in the
sender's stack frame with the path of the offending key.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["encode", "decode", "check_message"]

_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _fail(path: str, value: Any, why: str) -> None:
    raise TypeError(
        f"message key {path!r} holds {type(value).__name__} {value!r:.60}: {why}. "
        "Messages may contain only str, bytes, int, float, bool, None, "
        "list and dict with str keys."
    )


def _check_int(path: str, value: int) -> None:
    if not _INT_MIN <= value <= _INT_MAX:
        _fail(path, value, "integer does not fit in 64 bits")


def _check_dict(obj: dict, path: str) -> None:
    for key, value in obj.items():
        if type(key) is not str:
            raise TypeError(
                f"message key {path + '.' if path else ''}{key!r} is a "
                f"{type(key).__name__}: message dict keys must be str"
            )
        kind = type(value)
        if kind in _SCALARS:
            if kind is int:
                _check_int(f"{path}.{key}" if path else key, value)
            continue
        sub = f"{path}.{key}" if path else key
        if kind is dict:
            _check_dict(value, sub)
        elif kind is list:
            _check_list(value, sub)
        else:
            _fail(sub, value, "unsupported type")


def _check_list(obj: list, path: str) -> None:
    for index, value in enumerate(obj):
        kind = type(value)
        if kind in _SCALARS:
            if kind is int:
                _check_int(f"{path}[{index}]", value)
            continue
        sub = f"{path}[{index}]"
        if kind is dict:
            _check_dict(value, sub)
        elif kind is list:
            _check_list(value, sub)
        else:
            _fail(sub, value, "unsupported type")


def check_message(message: Any) -> None:
    """Raise ``TypeError`` naming the offending key if ``message`` is not sendable."""
    if type(message) is not dict:
        raise TypeError(
            f"a message must be a dict, not {type(message).__name__} ({message!r:.60})"
        )
    _check_dict(message, "")


def encode(message: dict) -> bytes:
    """Validate ``message`` and return its msgpack encoding."""
    check_message(message)
    return msgpack.packb(message, use_bin_type=True)


def decode(data: bytes) -> dict:
    """Turn bytes made by :func:`encode` back into a fresh dict."""
    return msgpack.unpackb(data, raw=False)
