"""Testing helpers for chanlite: test cases, clients, routes, fake clock, live server,
and ``eventually()`` for bounded waits on other threads and processes.

Everything is importable from here (``from chanlite.testing import WSClient``).
Names are loaded lazily because the pytest plugin imports this package
before pytest-django has configured settings, and ``django.test`` needs them.
"""

from typing import Any

from .clock import FakeClock
from .waiting import eventually

_LAZY = {
    "ChannelTestCase": "cases",
    "TransactionChannelTestCase": "cases",
    "ChannelTestCaseMixin": "cases",
    "Client": "client",
    "WSClient": "websocket",
    "HttpClient": "http",
    "ChannelResponse": "http",
    "apply_routes": "routes",
    "run_until_idle": "idle",
    "EndlessLoop": "idle",
    "delay_service": "idle",
    "LayerSwap": "layers",
    "make_test_layer": "layers",
    "ChannelLiveServerTestCase": "live",
    "LiveServer": "live",
}

__all__ = ["FakeClock", "eventually", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chanlite.testing' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 — PEP 562: loaded on first use

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
