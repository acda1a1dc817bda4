"""What a project's ``asgi.py`` imports, as in Channels 1.x::

    import os
    from chanlite.asgi import get_channel_layer

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_project.settings")
    channel_layer = get_channel_layer()

The layer returned carries ``.alias``, so a server handed it finds the
routing with ``chanlite.routing.get_router(layer.alias)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from . import DEFAULT_CHANNEL_LAYER

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import BaseChannelLayer

__all__ = ["get_channel_layer", "channel_layers"]


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer:
    """Set up Django (if the caller has not) and return the layer for ``alias``."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup(set_prefix=False)
    from .layers import get_channel_layer as _get

    return _get(alias)


class _ChannelLayers(Mapping):
    """``channel_layers["default"]`` (the 1.x ``channels.channel_layers``)."""

    def __getitem__(self, alias: str) -> BaseChannelLayer:
        from .layers import get_channel_layer as _get
        from .layers import layer_settings

        layer_settings(alias)  # raises ImproperlyConfigured for an unknown alias
        return _get(alias)

    def __iter__(self) -> Iterator[str]:
        from .layers import _all_settings

        return iter(_all_settings())

    def __len__(self) -> int:
        from .layers import _all_settings

        return len(_all_settings())


channel_layers = _ChannelLayers()
