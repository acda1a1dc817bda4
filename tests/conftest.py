"""Fixtures shared by several areas of the suite.

Layout (docs/architecture.md, "Tests by area"): each area is a package under
tests/ (``layers/``, ``server/``, ``model/``, ``toolkit/``, ``examples/``,
``platforms/``, ``compat/``, ``security/``, ``first_hour/``, ``docs/``); an
area's own ``conftest.py`` holds the fixtures only it uses, and a fixture
comes here when a second area needs it. Helper modules live in the area of
the component they drive (``tests/layers/ipc_helpers.py``,
``tests/server/server_fixtures.py``). ``channel_layer``, ``clock``,
``ws_client`` and the other toolkit fixtures come from chanlite's own pytest
plugin (chanlite/testing/pytest_plugin.py), as they do in users' projects.

This module must import on every platform: tests/platforms runs part of the
suite where the IPC layer cannot load, so the IPC fixtures import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.server.server_fixtures import chanlite_server  # noqa: F401 (server, security)


@pytest.fixture
def ipc_prefix() -> Iterator[str]:
    """A fresh IPC prefix (layers, security); removed after the test, which
    then checks that nothing of it is left in /dev/shm."""
    # lazy: the IPC layer refuses to import where it cannot run (see above)
    from chanlite.layers.ipc import IPCChannelLayer
    from tests.layers.ipc_helpers import leftovers, unique_prefix

    prefix = unique_prefix()
    yield prefix
    IPCChannelLayer.remove_prefix(prefix)
    assert leftovers(prefix) == [], f"test left {leftovers(prefix)} in /dev/shm"


@pytest.fixture
def make_ipc(ipc_prefix: str) -> Iterator[Callable[..., Any]]:
    """Build IPC layers on the test's prefix (default: ``SMALL`` sizes),
    closed after the test."""
    # lazy: the IPC layer refuses to import where it cannot run (see above)
    from chanlite.layers.ipc import IPCChannelLayer
    from tests.layers.ipc_helpers import SMALL

    layers: list[IPCChannelLayer] = []

    def make(**config: Any) -> IPCChannelLayer:
        layer = IPCChannelLayer(prefix=config.pop("prefix", ipc_prefix), **{**SMALL, **config})
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        layer.close()
