"""``ChannelTestCase`` / ``TransactionChannelTestCase``: Django test cases with
fresh, fake-clocked channel layers.

Each test gets a new in-memory layer for every alias in
``test_channel_aliases`` (installed before ``setUp``, removed after
``tearDown``), so nothing queued leaks between tests and expiry only moves
with ``self.clock.advance()``. The configured routing stays in force
(routers belong to the alias); narrow it with ``apply_routes``.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.test import TestCase, TransactionTestCase

from .. import DEFAULT_CHANNEL_LAYER
from ..layers import InvalidChannelLayerError, get_channel_layer
from ..routing import Router, _routers, get_router, set_router
from .client import next_message
from .clock import FakeClock
from .idle import run_until_idle
from .layers import LayerSwap

__all__ = ["ChannelTestCaseMixin", "ChannelTestCase", "TransactionChannelTestCase"]

_PRE_SETUP_IS_CLASSMETHOD = isinstance(
    inspect.getattr_static(TransactionTestCase, "_pre_setup"), classmethod
)


class ChannelTestCaseMixin:
    """The layer swap and helpers, for mixing into any Django test case."""

    #: Aliases swapped for a fresh in-memory layer in each test.
    test_channel_aliases: list[str] = [DEFAULT_CHANNEL_LAYER]

    clock: FakeClock
    channel_layers: dict[str, Any]
    _layer_swap: LayerSwap | None = None
    _saved_routers: dict[str, Any] | None = None

    # Django 5.1 made ``_pre_setup`` a classmethod (TransactionTestCase runs
    # it eagerly from setUpClass for the first test); 4.2 has a method. The
    # per-test state lives on the class either way: tests run one at a time.
    if _PRE_SETUP_IS_CLASSMETHOD:

        @classmethod
        def _pre_setup(cls) -> None:  # type: ignore[override]
            super()._pre_setup()  # type: ignore[misc]
            cls._install_test_layers()

    else:  # pragma: no cover - Django < 5.1

        def _pre_setup(self) -> None:  # type: ignore[override]
            super()._pre_setup()  # type: ignore[misc]
            type(self)._install_test_layers()

    @classmethod
    def _install_test_layers(cls) -> None:
        cls.clock = FakeClock()
        cls._layer_swap = LayerSwap(cls.test_channel_aliases, cls.clock)
        cls.channel_layers = cls._layer_swap.install()
        cls._saved_routers = _install_router_copies(cls.test_channel_aliases)

    def _post_teardown(self) -> None:
        swap = type(self).__dict__.get("_layer_swap")
        if swap is not None:
            swap.restore()
            type(self)._layer_swap = None
        saved = type(self).__dict__.get("_saved_routers")
        if saved is not None:
            for alias, router in saved.items():
                set_router(alias, router)
            type(self)._saved_routers = None
        super()._post_teardown()  # type: ignore[misc]

    @property
    def channel_layer(self) -> Any:
        """The test layer of the default alias."""
        return self.channel_layers[self.test_channel_aliases[0]]

    def get_next_message(self, channel: str, alias: str = DEFAULT_CHANNEL_LAYER,
                         require: bool = False) -> Any:
        """The next message sent to ``channel`` during the test (a Message),
        or None; with ``require`` a missing message fails the test."""
        message = next_message(get_channel_layer(alias), channel)
        if message is None and require:
            self.fail(f"expected a message on channel {channel!r} (alias {alias!r}), got none")  # type: ignore[attr-defined]
        return message

    def run_until_idle(self, alias: str = DEFAULT_CHANNEL_LAYER, routing: Any = None,
                       **options: Any) -> int:
        """Run every pending message of ``alias`` through its routing; return the count."""
        return run_until_idle(self.channel_layers[alias], routing, alias=alias, **options)


def _install_router_copies(aliases: list[str]) -> dict[str, Any]:
    """Give each alias a copy of its router for one test, so a test that
    adds routes (1.x: ``channel_layers[alias].router.add_route(...)``)
    changes nothing outside itself. An alias without ``ROUTING`` gets an
    empty router. Returns the routers to put back."""
    saved: dict[str, Any] = {}
    for alias in aliases:
        cached = _routers.get(alias)
        try:
            entries = list(get_router(alias).root.routing)
        except InvalidChannelLayerError:
            entries = []
        saved[alias] = cached
        set_router(alias, Router(entries))
    return saved


class ChannelTestCase(ChannelTestCaseMixin, TestCase):
    """A Django ``TestCase`` (one transaction per test) with test channel layers."""


class TransactionChannelTestCase(ChannelTestCaseMixin, TransactionTestCase):
    """A Django ``TransactionTestCase`` (tables flushed per test) with test channel layers."""
