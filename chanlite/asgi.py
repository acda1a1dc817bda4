"""What a project's ``asgi.py`` imports, and 1.x's ``channels.asgi`` API.

A project's ``asgi.py``, as in Channels 1.x::

    import os
    from chanlite.asgi import get_channel_layer

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_project.settings")
    channel_layer = get_channel_layer()

The layer returned carries ``.alias``, so a server handed it finds the
routing with ``chanlite.routing.get_router(layer.alias)``.

``channel_layers[alias]`` returns a :class:`ChannelLayerWrapper` like 1.x's:
the layer plus its alias and router, passing every other attribute through
to the layer, so code written against 1.x (``channel_layers["default"]
.router.add_route(...)``, ``Worker(channel_layers["default"])``,
``.send(...)``) keeps working. In chanlite the layer and the router of an
alias are registered separately (``chanlite.layers.set_channel_layer`` and
``chanlite.routing.set_router``); a wrapper from ``channel_layers[alias]``
reads both live, so test layer swaps and ``apply_routes`` show through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import django
from django.apps import apps

from . import DEFAULT_CHANNEL_LAYER
from .layers import InvalidChannelLayerError, _all_settings, layer_settings, set_channel_layer
from .layers import get_channel_layer as _get
from .routing import Router, _routers, get_router, set_router
from .testing.layers import make_test_layer

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import BaseChannelLayer
    from .routing import Router

__all__ = [
    "get_channel_layer",
    "channel_layers",
    "ChannelLayerWrapper",
    "ChannelLayerManager",
    "InvalidChannelLayerError",
]


def get_channel_layer(alias: str = DEFAULT_CHANNEL_LAYER) -> BaseChannelLayer:
    """Set up Django (if the caller has not) and return the layer for ``alias``."""
    if not apps.ready:
        django.setup(set_prefix=False)

    return _get(alias)


class ChannelLayerWrapper:
    """A channel layer with its alias and router (1.x's ``ChannelLayerWrapper``).

    ``ChannelLayerWrapper(channel_layer, alias, routing)`` builds a
    standalone one with its own ``Router(routing)`` (1.x tests did that to
    run a Worker on a private layer). Wrappers from ``channel_layers[alias]``
    have no routing of their own: ``.router`` is the alias's current router.

    Every attribute the wrapper does not have comes from the layer
    (``send``, ``receive``, ``group_add``, ``flush``, ``ChannelFull``, ...), so
    a wrapper can be passed wherever a layer is expected. Assigning an
    attribute (``wrapper.send = mock``) changes the wrapper only.
    """

    def __init__(self, channel_layer: BaseChannelLayer, alias: str = DEFAULT_CHANNEL_LAYER,
                 routing: Any = None) -> None:
        if isinstance(channel_layer, ChannelLayerWrapper):
            channel_layer = channel_layer.channel_layer
        self.channel_layer = channel_layer
        self.alias = alias
        self._router: Router | None = None
        #: True when this wrapper carries its own router (``set`` installs it).
        self._pin_router = routing is not None
        if routing is not None:
            self.router = routing  # type: ignore[assignment]

    @property
    def router(self) -> Router:
        """The Router: this wrapper's own, else the alias's current one."""
        if self._router is not None:
            return self._router

        return get_router(self.alias)

    @router.setter
    def router(self, router: Any) -> None:
        self._router = router if isinstance(router, Router) else Router(router)
        self._pin_router = True

    @property
    def routing(self) -> list:
        """The routing entries (a list; 1.x copied it with ``routing[:]``)."""
        return self.router.root.routing

    @routing.setter
    def routing(self, routing: Any) -> None:
        self.router = routing

    def local_only(self) -> bool:
        """True for a layer that cannot reach other processes (in-memory):
        1.x's ``runworker`` refused those."""
        return bool(getattr(self.channel_layer, "local_only", False)) or (
            "memory" in type(self.channel_layer).__module__
        )

    def __getattr__(self, name: str) -> Any:
        if name == "channel_layer":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.channel_layer, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChannelLayerWrapper):
            return self.channel_layer is other.channel_layer and self.alias == other.alias
        return NotImplemented

    def __hash__(self) -> int:
        return hash((id(self.channel_layer), self.alias))

    def __repr__(self) -> str:
        return f"<ChannelLayerWrapper {self.alias!r} {type(self.channel_layer).__name__}>"


class ChannelLayerManager(Mapping):
    """``channel_layers`` (1.x's ``channels.channel_layers``): ``[alias]``
    gives a :class:`ChannelLayerWrapper`; an unknown alias or a broken
    ``CHANNEL_LAYERS`` entry raises :class:`InvalidChannelLayerError`."""

    def __getitem__(self, alias: str) -> ChannelLayerWrapper:
        layer_settings(alias)  # raises InvalidChannelLayerError for an unknown alias
        return ChannelLayerWrapper(_get(alias), alias)

    def __contains__(self, alias: object) -> bool:
        return alias in _all_settings()

    def __iter__(self) -> Iterator[str]:
        return iter(_all_settings())

    def __len__(self) -> int:
        return len(_all_settings())

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        """``settings.CHANNEL_LAYERS`` (or the default in-memory entry)."""
        return _all_settings()

    def set(self, alias: str, layer: ChannelLayerWrapper | BaseChannelLayer | None) -> Any:
        """Install ``layer`` (a wrapper: its layer and, if it has one, its own
        router) for ``alias``; return what was there before as a wrapper that
        ``set`` accepts back. ``None`` forgets the alias's layer and router
        (both are rebuilt from settings on next use)."""
        if layer is None:
            old_layer = set_channel_layer(alias, None)
            old_router = set_router(alias, None)
        elif isinstance(layer, ChannelLayerWrapper):
            old_layer = set_channel_layer(alias, layer.channel_layer)
            old_router = set_router(alias, layer._router) if layer._pin_router \
                else _current_router(alias)
        else:
            old_layer = set_channel_layer(alias, layer)
            old_router = _current_router(alias)
        if old_layer is None:
            return None
        previous = ChannelLayerWrapper(old_layer, alias)
        previous._router, previous._pin_router = old_router, True
        return previous

    def make_test_backend(self, alias: str = DEFAULT_CHANNEL_LAYER) -> ChannelLayerWrapper:
        """A fresh in-memory wrapper for ``alias`` built from its
        ``TEST_CONFIG`` (1.x); raises InvalidChannelLayerError without one."""
        entry = layer_settings(alias)
        if "TEST_CONFIG" not in entry:
            raise InvalidChannelLayerError(
                f"CHANNEL_LAYERS[{alias!r}] has no 'TEST_CONFIG' to build a test layer from"
            )
        return ChannelLayerWrapper(make_test_layer(alias), alias)


def _current_router(alias: str) -> Router | None:
    return _routers.get(alias)


channel_layers = ChannelLayerManager()
