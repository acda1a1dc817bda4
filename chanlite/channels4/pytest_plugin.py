"""pytest fixture for Channels 4 projects: a real, fresh IPC layer per test.

Enable it in a ``conftest.py``::

    pytest_plugins = ["chanlite.channels4.pytest_plugin"]

and let the project's settings read the prefix from the environment, so that
processes a test spawns (live servers, workers) join the same layer::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "chanlite.channels4.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("CHANLITE_IPC_PREFIX", "mysite")},
    }}

Why a fixture and not a settings override alone: each test needs its own
segment (no leftovers from the previous test, no clash with a parallel
run), Channels caches layer instances (they must be rebuilt for the new
prefix and closed after), and the segment must be removed from /dev/shm.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import override_settings

#: Environment variable the fixture sets for spawned processes.
PREFIX_ENV = "CHANLITE_IPC_PREFIX"


@dataclass
class IPCLayers:
    """What the fixture yields: the prefix, the settings it applied, the layer."""

    prefix: str
    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def layer(self) -> Any:
        """The ``default`` layer of this test (``get_channel_layer()``)."""
        from channels.layers import get_channel_layer  # noqa: PLC0415 — Channels 4 is optional (the channels4 extra)

        return get_channel_layer()


@contextmanager
def fresh_ipc_layers() -> Iterator[IPCLayers]:
    """``CHANNEL_LAYERS["default"]`` on a fresh IPC prefix, undone on exit.

    Sets ``CHANLITE_IPC_PREFIX`` in ``os.environ`` (inherited by processes
    started inside), overrides ``settings.CHANNEL_LAYERS``, and on exit
    closes the layers this process built, removes the segment and restores
    both. Usable without pytest (``unittest``'s ``setUp``/``addCleanup``).
    """
    from channels.layers import channel_layers  # noqa: PLC0415 — Channels 4 is optional (the channels4 extra)

    from chanlite.layers.ipc import IPCChannelLayer as _Store  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

    prefix = f"t{os.getpid()}-{uuid.uuid4().hex[:12]}"
    config = {"BACKEND": "chanlite.channels4.IPCChannelLayer", "CONFIG": {"prefix": prefix}}
    old_env = os.environ.get(PREFIX_ENV)
    os.environ[PREFIX_ENV] = prefix
    override = override_settings(CHANNEL_LAYERS={"default": config})
    override.enable()  # Channels drops its cached layers on setting_changed
    try:
        yield IPCLayers(prefix=prefix, settings={"default": config}, env={PREFIX_ENV: prefix})
    finally:
        built = list(channel_layers.backends.values())
        override.disable()
        if old_env is None:
            os.environ.pop(PREFIX_ENV, None)
        else:
            os.environ[PREFIX_ENV] = old_env
        for layer in built:
            close = getattr(layer, "close_sync", None)
            if close is not None:
                close()
        _Store.remove_prefix(prefix)


@pytest.fixture
def ipc_channel_layers() -> Iterator[IPCLayers]:
    """A real IPC layer on a fresh prefix for this test (see :func:`fresh_ipc_layers`)."""
    with fresh_ipc_layers() as layers:
        yield layers
