"""``chanlite.test``: 1.x's ``channels.test`` import path.

A Channels 1.x test module imports ``from channels.test import
ChannelTestCase, Client, HttpClient, WSClient, apply_routes``; with
``channels`` replaced by ``chanlite`` that import lands here. Everything is
:mod:`chanlite.testing` (the documented home), loaded lazily like there.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - names for type checkers and linters
    from .testing import (
        ChannelLiveServerTestCase,
        ChannelTestCase,
        ChannelTestCaseMixin,
        Client,
        HttpClient,
        TransactionChannelTestCase,
        WSClient,
        apply_routes,
    )

__all__ = [
    "ChannelTestCase",
    "TransactionChannelTestCase",
    "ChannelTestCaseMixin",
    "Client",
    "WSClient",
    "HttpClient",
    "apply_routes",
    "ChannelLiveServerTestCase",
]


def __getattr__(name: str) -> Any:
    from . import testing  # noqa: PLC0415 — PEP 562: loaded on first use

    try:
        return getattr(testing, name)
    except AttributeError:
        raise AttributeError(f"module 'chanlite.test' has no attribute {name!r}") from None
