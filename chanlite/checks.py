"""Django system checks for chanlite: misconfigurations fail loudly, at once.

Every check here is a plain function ``check_x(app_configs, **kwargs) ->
list[CheckMessage]`` decorated with :func:`chanlite_check`, which records it
in :data:`CHECKS`; ``ChanliteConfig.ready()`` registers all of them with
Django under the ``chanlite`` tag, so ``manage.py check``, ``runserver``,
``runworker``, ``migrate`` and ``chanlite serve`` run them. Add a check by
writing one self-contained decorated function; ids are ``chanlite.E0NN``
(errors) and ``chanlite.W0NN`` (warnings), each used once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import get_commands
from django.core.management.base import SystemCheckError
from django.utils.module_loading import import_string

from .layers import layer_settings
from .layers._ipc_layout import check_prefix
from .layers._ipc_platform import ALTERNATIVES, IPCUnavailable, describe, missing_ipc_support
from .layers.base import BaseChannelLayer
from .layers.memory import InMemoryChannelLayer
from .routing import get_router

__all__ = ["CHECKS", "chanlite_check", "register_checks"]

CheckFunction = Callable[..., list[checks.CheckMessage]]

#: Every chanlite check, in definition order (registered by the app config).
CHECKS: list[CheckFunction] = []


def chanlite_check(function: CheckFunction) -> CheckFunction:
    """Record ``function`` as a chanlite system check (see :func:`register_checks`)."""
    CHECKS.append(function)
    return function


def register_checks() -> None:
    """Register every check in :data:`CHECKS` with Django (idempotent: Django's
    registry is a set, so calling this again does not run a check twice)."""
    for function in CHECKS:
        checks.register(function, "chanlite")


# ------------------------------------------------------------------ helpers

_CHANNELS_1X_BACKENDS = {
    "asgiref.inmemory.ChannelLayer": "chanlite.layers.memory.InMemoryChannelLayer",
    "asgi_redis.RedisChannelLayer": "chanlite.layers.redis.RedisChannelLayer",
    "asgi_redis.RedisLocalChannelLayer": "chanlite.layers.redis.RedisChannelLayer",
    "asgi_redis.RedisSentinelChannelLayer": "chanlite.layers.redis.RedisChannelLayer",
    "asgi_ipc.IPCChannelLayer": "chanlite.layers.ipc.IPCChannelLayer",
}


def _layer_aliases() -> list[str]:
    layers = getattr(settings, "CHANNEL_LAYERS", None)
    return list(layers) if isinstance(layers, dict) else []


def _backend_class(backend: str) -> type | None:
    """The BACKEND class, None if it cannot be imported. ``IPCUnavailable``
    (the IPC layer on a platform without POSIX IPC) propagates: that is
    :func:`check_ipc_layer_platform`'s to report, not a wrong name."""
    try:
        cls = import_string(backend)
    except IPCUnavailable:
        raise
    except ImportError:
        return None
    return cls if isinstance(cls, type) else None


def _config_keys(cls: type) -> set[str] | None:
    """Keyword arguments ``cls(**CONFIG)`` accepts, following ``**kwargs`` up the
    MRO; ``None`` when some ``__init__`` takes anything (cannot tell)."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        passes_on = False
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind is param.VAR_KEYWORD:
                passes_on = True
            elif param.kind is param.VAR_POSITIONAL:
                continue
            else:
                keys.add(param.name)
        if not passes_on:
            return keys
    return None


def _ipc_layer_class() -> type | None:
    """The IPC layer's class, or None where this platform has none (importing
    it raises ``IPCUnavailable``, an ``ImportError``)."""
    try:
        from .layers.ipc import IPCChannelLayer  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)
    except ImportError:
        return None
    return IPCChannelLayer


def _config_value_error(cls: type, config: dict[str, Any]) -> str | None:
    """The first invalid CONFIG value, checked without opening anything (no
    shared-memory segment, no Redis connection): the shared keys through a
    throwaway in-memory layer, the IPC layer's own keys through its checks."""
    base_keys = set(list(inspect.signature(BaseChannelLayer.__init__).parameters)[1:])
    try:
        InMemoryChannelLayer(**{k: v for k, v in config.items() if k in base_keys})
        ipc_layer = _ipc_layer_class()
        if ipc_layer is not None and issubclass(cls, ipc_layer):
            from .layers.ipc import check_sizes  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

            check_prefix(config.get("prefix", "chanlite"))
            check_sizes(**{key: config[key] for key in ("memory", "max_channels", "max_groups")
                           if key in config})
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------- checks

@chanlite_check
def check_runserver_is_chanlite(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """``chanlite`` must provide ``runserver``: apps listed earlier win, and
    staticfiles' runserver is Django's plain server (no WebSockets, no workers)."""
    installed = apps.is_installed("chanlite")
    if not installed and getattr(settings, "CHANNEL_LAYERS", None) is None:
        return []
    owner = get_commands().get("runserver")
    if installed and owner == "chanlite":
        return []
    if not installed:
        return [checks.Error(
            "'chanlite' is not in INSTALLED_APPS but CHANNEL_LAYERS is set.",
            hint="Add 'chanlite' to INSTALLED_APPS, above 'django.contrib.staticfiles', or "
                 "runserver will be Django's own server without WebSockets (and "
                 "runworker / chanlite_ipc will not exist).",
            id="chanlite.E001",
        )]
    above = owner  # the app whose runserver wins (e.g. 'django.contrib.staticfiles')
    return [checks.Error(
        f"'chanlite' is listed after {above!r} in INSTALLED_APPS: move 'chanlite' above "
        f"{above!r} in INSTALLED_APPS, or runserver will be Django's own server without "
        "WebSockets.",
        hint=f"The first app in INSTALLED_APPS with a runserver command wins; {above!r} has "
             "one (Django's plain WSGI server: no WebSockets, no embedded workers).",
        id="chanlite.E001",
    )]


@chanlite_check
def check_layer_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """CHANNEL_LAYERS has the Channels shape, BACKENDs import, CONFIGs are valid."""
    errors: list[checks.CheckMessage] = []

    if not isinstance(getattr(settings, "CHANNEL_LAYERS", {}), dict):
        return [checks.Error(
            f"CHANNEL_LAYERS must be a dict of alias -> {{'BACKEND': ..., 'CONFIG': ...}}, "
            f"not {type(settings.CHANNEL_LAYERS).__name__}.", id="chanlite.E006")]
    aliases = _layer_aliases()
    for alias in aliases:
        try:
            entry = layer_settings(alias)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="chanlite.E006"))
            continue
        backend = entry["BACKEND"]
        where = f"CHANNEL_LAYERS[{alias!r}]['BACKEND']"
        try:
            cls = _backend_class(backend) if isinstance(backend, str) else None
        except ImportError:  # IPCUnavailable: reported by check_ipc_layer_platform
            continue
        if cls is None:
            new_name = _CHANNELS_1X_BACKENDS.get(backend)
            hint = (f"That is a Channels 1.x layer; chanlite's own is {new_name!r}."
                    if new_name else
                    "Use 'chanlite.layers.memory.InMemoryChannelLayer', "
                    "'chanlite.layers.ipc.IPCChannelLayer' or "
                    "'chanlite.layers.redis.RedisChannelLayer'.")
            errors.append(checks.Error(f"{where} = {backend!r} cannot be imported.",
                                       hint=hint, id="chanlite.E002"))
            continue
        if not issubclass(cls, BaseChannelLayer):
            errors.append(checks.Error(
                f"{where} = {backend!r} is not a channel layer class.",
                hint="Name a subclass of chanlite.layers.BaseChannelLayer.", id="chanlite.E002"))
            continue
        config = entry.get("CONFIG", {})
        allowed = _config_keys(cls)
        unknown = sorted(set(config) - allowed) if allowed is not None else []
        for key in unknown:
            errors.append(checks.Error(
                f"CHANNEL_LAYERS[{alias!r}]['CONFIG'] has unknown key {key!r} for {backend}.",
                hint=f"Allowed keys: {', '.join(sorted(allowed or ()))}.", id="chanlite.E005"))
        if not unknown:
            problem = _config_value_error(cls, config)
            if problem:
                errors.append(checks.Error(
                    f"CHANNEL_LAYERS[{alias!r}]['CONFIG'] is invalid: {problem}.",
                    hint="Fix that key (docs/layers.md lists every key and its default).",
                    id="chanlite.E005"))
    return errors


@chanlite_check
def check_routing(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Every ROUTING imports and is a valid routing list (the real error, not
    ``import_string``'s "does not define an attribute")."""
    errors: list[checks.CheckMessage] = []
    for alias in _layer_aliases():
        try:
            entry = layer_settings(alias)
        except ImproperlyConfigured:
            continue  # reported by check_layer_settings
        if entry.get("ROUTING") is None:
            continue  # a plain Django project: views only
        try:
            get_router(alias)
        except ImproperlyConfigured as exc:
            errors.append(checks.Error(str(exc), id="chanlite.E003"))
    return errors


def check_embedded_workers(alias: str, workers: int, command: str) -> list[checks.CheckMessage]:
    """An in-memory layer with no embedded workers can never run a consumer:
    no other process can reach it. Commands call this with their options
    (it depends on them, so it is not a registered check)."""
    if workers > 0:
        return []
    entry = layer_settings(alias)
    try:
        cls = _backend_class(entry["BACKEND"])
    except ImportError:  # IPCUnavailable: not the in-memory layer, and reported elsewhere
        return []
    if cls is None or not issubclass(cls, InMemoryChannelLayer) or entry.get("ROUTING") is None:
        return []
    return [checks.Error(
        f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer and {command} runs no embedded "
        "workers, so no consumer could ever answer (every WebSocket would be rejected).",
        hint="Drop --noworker / --workers 0, or use a cross-process layer "
             "('chanlite.layers.ipc.IPCChannelLayer' or 'chanlite.layers.redis."
             "RedisChannelLayer') with `manage.py runworker` processes.",
        id="chanlite.E004",
    )]


def raise_if_errors(messages: list[checks.CheckMessage]) -> None:
    """Raise Django's ``SystemCheckError`` for ``messages`` formatted as
    ``manage.py check`` would (for the command-level checks above)."""
    serious = [m for m in messages if m.is_serious()]
    if serious:
        body = "\n".join(str(m) for m in serious)
        raise SystemCheckError(
            f"System check identified some issues:\n\nERRORS:\n{body}\n\n"
            f"System check identified {len(serious)} issue(s)."
        )


@chanlite_check
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
