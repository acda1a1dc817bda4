"""Channel layers and the registry that builds them from Django settings.

``settings.CHANNEL_LAYERS`` has the shape used by Channels 1.x::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
            "CONFIG": {"capacity": 100},
            "ROUTING": "myproject.routing.channel_routing",
        },
    }

No setting at all (or no configured Django settings) means one in-memory
layer under the alias ``"default"``. Layers are built once per alias and
cached; :func:`set_channel_layer` swaps one (the testing package uses it).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .base import BaseChannelLayer, ChannelFull, MessageTooLarge

__all__ = [
    "DEFAULT_CHANNEL_LAYER",
    "InvalidChannelLayerError",
    "BaseChannelLayer",
    "ChannelFull",
    "MessageTooLarge",
    "get_channel_layer",
    "layer_settings",
    "set_channel_layer",
    "reset_channel_layers",
]

DEFAULT_CHANNEL_LAYER = "default"


# ignore: Django ships no annotations, so its exception is Any to mypy.
class InvalidChannelLayerError(ImproperlyConfigured, ValueError):  # type: ignore[misc]
    """An unknown alias or a broken ``CHANNEL_LAYERS`` entry (1.x's
    ``channels.asgi.InvalidChannelLayerError``, a ``ValueError``; also an
    ``ImproperlyConfigured``, which is what Django code expects)."""


DEFAULT_BACKEND = "chanlite.layers.memory.InMemoryChannelLayer"
_ALLOWED_KEYS = {"BACKEND", "CONFIG", "ROUTING", "TEST_CONFIG"}

_layers: dict[str, BaseChannelLayer] = {}
_lock = threading.Lock()


def _all_settings() -> dict[str, dict[str, Any]]:
    if not settings.configured:
        return {DEFAULT_CHANNEL_LAYER: {"BACKEND": DEFAULT_BACKEND}}
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if layers is None:
        return {DEFAULT_CHANNEL_LAYER: {"BACKEND": DEFAULT_BACKEND}}
    if not isinstance(layers, dict):
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS must be a dict of alias -> {{'BACKEND': ..., 'CONFIG': ...}}, "
            f"not {type(layers).__name__}"
        )
    return layers


def layer_settings(alias: str = DEFAULT_CHANNEL_LAYER) -> dict[str, Any]:
    """The validated settings dict of ``alias`` (BACKEND, CONFIG, ROUTING)."""
    layers = _all_settings()
    if alias not in layers:
        raise InvalidChannelLayerError(
            f"no channel layer {alias!r} in CHANNEL_LAYERS (configured: "
            f"{', '.join(sorted(map(repr, layers))) or 'none'}); add it or use one of those"
        )
    entry = layers[alias]
    if not isinstance(entry, dict):
        raise InvalidChannelLayerError(f"CHANNEL_LAYERS[{alias!r}] must be a dict, not {entry!r}")
    unknown = set(entry) - _ALLOWED_KEYS
    if unknown:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}] has unknown keys {sorted(unknown)}; "
            f"allowed: {sorted(_ALLOWED_KEYS)}"
        )
    if "BACKEND" not in entry:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}] needs a 'BACKEND', e.g. {DEFAULT_BACKEND!r}"
        )
    config = entry.get("CONFIG", {})
    if not isinstance(config, dict):
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]['CONFIG'] must be a dict of keyword arguments"
        )
    return entry


def build_layer(alias: str = DEFAULT_CHANNEL_LAYER, **overrides: Any) -> BaseChannelLayer:
    """Build a new (uncached) layer for ``alias`` from settings."""
    entry = layer_settings(alias)
    backend = entry["BACKEND"]
    try:
        cls = import_string(backend)
    except ImportError as exc:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] = {backend!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseChannelLayer)):
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]['BACKEND'] = {backend!r} is not a channel layer "
            "class (a subclass of chanlite.layers.BaseChannelLayer)"
        )
    config = {**entry.get("CONFIG", {}), **overrides}
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:
        raise InvalidChannelLayerError(
            f"CHANNEL_LAYERS[{alias!r}]['CONFIG'] is not valid for {backend}: {exc}"
        ) from exc


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer:
    """The process-wide layer for ``alias``, built from settings on first use."""
    try:
        return _layers[alias]
    except KeyError:
        pass
    with _lock:
        if alias not in _layers:
            layer = build_layer(alias)
            layer.alias = alias  # lets servers and workers find the alias's ROUTING
            _layers[alias] = layer
        return _layers[alias]


def set_channel_layer(alias: str, layer: BaseChannelLayer | None) -> BaseChannelLayer | None:
    """Install ``layer`` for ``alias`` (``None`` forgets it); return the previous one."""
    with _lock:
        previous = _layers.pop(alias, None)
        if layer is not None:
            layer.alias = alias
            _layers[alias] = layer
        return previous


def reset_channel_layers() -> None:
    """Forget every built layer (they are rebuilt from settings on next use)."""
    with _lock:
        _layers.clear()
