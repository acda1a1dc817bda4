"""System checks (``manage.py check``, and before ``runserver``/``migrate``).

Registered with ``django.core.checks.register`` when this module is imported
(``ChanliteConfig.ready()`` imports it), so a misconfiguration is reported
before a server or worker starts rather than at the first message.
"""

from __future__ import annotations

from typing import Any

from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_ipc_layer_platform(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """An IPC layer configured where it cannot run (Windows, macOS, no posix_ipc).

    Why a check: on such a platform the error would otherwise come from the
    first ``get_channel_layer()`` — in a worker at its start, or in the
    server at its first WebSocket. The check names what is missing (the same
    text as the ``ImproperlyConfigured`` the layer raises) and the
    alternatives. Backends outside ``chanlite.layers`` are imported to find
    subclasses of the IPC layer; ones that fail to import for another reason
    are left to the error the layer registry raises.
    """
    from django.conf import settings
    from django.utils.module_loading import import_string

    from .layers._ipc_platform import ALTERNATIVES, IPCUnavailable, describe, missing_ipc_support

    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if not isinstance(layers, dict):
        return []
    errors: list[checks.CheckMessage] = []
    for alias, entry in layers.items():
        backend = entry.get("BACKEND") if isinstance(entry, dict) else None
        if not isinstance(backend, str):
            continue
        if not backend.startswith("chanlite.layers.ipc."):
            if backend.startswith("chanlite.layers."):
                continue
            try:
                import_string(backend)
                continue
            except IPCUnavailable:
                pass  # a subclass of the IPC layer: report below
            except Exception:  # noqa: BLE001 - reported when the layer is built
                continue
        missing = missing_ipc_support()
        if missing:
            errors.append(checks.Error(
                f"CHANNEL_LAYERS[{alias!r}] uses {backend}. {describe(missing)}",
                hint=ALTERNATIVES,
                obj=f"CHANNEL_LAYERS[{alias!r}]",
                id="chanlite.E101",
            ))
    return errors
