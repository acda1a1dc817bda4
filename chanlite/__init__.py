"""chanlite: Django Channels 1.x programming model, cheap to run and easy to test.

``from chanlite import Channel, Group`` works as ``from channels import
Channel, Group`` did. The names are loaded lazily so that importing
``chanlite`` (e.g. from settings or setup tooling) needs no configured
Django settings.
"""

from typing import Any

__version__ = "0.1.0"

DEFAULT_CHANNEL_LAYER = "default"

_LAZY = {
    "Channel": "chanlite.channel",
    "Group": "chanlite.channel",
    "Message": "chanlite.message",
    "channel_layers": "chanlite.asgi",
    # 1.x exported the routing helpers from ``channels`` itself too.
    "route": "chanlite.routing",
    "route_class": "chanlite.routing",
    "include": "chanlite.routing",
}

__all__ = ["DEFAULT_CHANNEL_LAYER", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chanlite' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 — PEP 562: loaded on first use

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
