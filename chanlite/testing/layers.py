"""Fresh, isolated layers for tests, swapped in for configured aliases.

Tests must not share queued messages with each other or with a developer's
running server, and expiry must follow a fake clock, so every test gets new
in-memory layers. The *rules* of the configured layer (expiry, capacities,
message size) are kept, so a test still sees ``ChannelFull`` where
production would; storage-specific options (an IPC prefix, Redis hosts) are
left out. ``TEST_CONFIG`` in ``CHANNEL_LAYERS[alias]`` overrides both.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .. import DEFAULT_CHANNEL_LAYER
from ..layers import layer_settings, set_channel_layer
from ..layers.memory import InMemoryChannelLayer
from .clock import FakeClock

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer

__all__ = ["make_test_layer", "LayerSwap", "ipc_test_layer", "remove_ipc_test_layer"]

#: CONFIG keys every layer understands (BaseChannelLayer's parameters).
RULE_KEYS = (
    "expiry",
    "group_expiry",
    "capacity",
    "process_capacity",
    "protocol_capacity",
    "channel_capacity",
    "max_message_size",
)

_counter = itertools.count()


def make_test_layer(
    alias: str = DEFAULT_CHANNEL_LAYER, clock: Any = None, **overrides: Any
) -> BaseChannelLayer:
    """A new in-memory layer with the rules of ``alias``'s configuration.

    Without configured settings (a plain pytest run) the defaults apply.
    """
    config: dict[str, Any] = {}
    if settings.configured:
        try:
            entry = layer_settings(alias)
        except ImproperlyConfigured:
            if alias != DEFAULT_CHANNEL_LAYER:
                raise
            entry = {}  # no "default" configured: the defaults, as at runtime
        config = {k: v for k, v in entry.get("CONFIG", {}).items() if k in RULE_KEYS}
        config.update(entry.get("TEST_CONFIG", {}))
    config.update(overrides)
    config["clock"] = clock if clock is not None else FakeClock()
    layer = InMemoryChannelLayer(**config)
    layer.alias = alias
    return layer


def ipc_test_layer(clock: Any = None, **config: Any) -> BaseChannelLayer:
    """An IPC layer on a unique prefix with small tables (fast to create).

    Call :func:`remove_ipc_test_layer` afterwards so /dev/shm is left clean.
    Raises ImportError when the IPC layer is not available here.
    """
    from ..layers.ipc import IPCChannelLayer  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

    prefix = f"test{os.getpid()}x{next(_counter)}{secrets.token_hex(3)}"
    small = {"memory": 4 << 20, "max_channels": 512, "max_groups": 64}
    return IPCChannelLayer(prefix=prefix, clock=clock or FakeClock(), **{**small, **config})


def remove_ipc_test_layer(layer: BaseChannelLayer) -> None:
    """Close an :func:`ipc_test_layer` and remove its segment and semaphores."""
    prefix = layer.prefix  # type: ignore[attr-defined]
    try:
        layer.close()  # type: ignore[attr-defined]
    finally:
        type(layer).remove_prefix(prefix)  # type: ignore[attr-defined]


class LayerSwap:
    """Install test layers for ``aliases`` and put the previous ones back.

    ``install()`` then ``restore()`` (or use it as a context manager).
    ``layers`` maps alias -> installed layer. The routing is untouched: a
    router belongs to the alias, not to the layer, so the configured
    ``ROUTING`` (or :func:`~chanlite.testing.apply_routes`) keeps applying.
    """

    def __init__(
        self,
        aliases: Iterable[str] = (DEFAULT_CHANNEL_LAYER,),
        clock: Any = None,
        layers: dict[str, BaseChannelLayer] | None = None,
    ) -> None:
        self.aliases = list(aliases)
        self.clock = clock if clock is not None else FakeClock()
        self.layers: dict[str, BaseChannelLayer] = dict(layers or {})
        self._previous: dict[str, BaseChannelLayer | None] = {}
        self._installed = False

    def install(self) -> dict[str, BaseChannelLayer]:
        if self._installed:
            raise RuntimeError("this LayerSwap is already installed")
        for alias in self.aliases:
            layer = self.layers.get(alias) or make_test_layer(alias, self.clock)
            self.layers[alias] = layer
            self._previous[alias] = set_channel_layer(alias, layer)
        self._installed = True
        return self.layers

    def restore(self) -> None:
        if not self._installed:
            return
        for alias in self.aliases:
            set_channel_layer(alias, self._previous.pop(alias, None))
        self._installed = False

    def __enter__(self) -> dict[str, BaseChannelLayer]:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()
