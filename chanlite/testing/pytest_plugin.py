"""pytest plugin for chanlite (registered through the ``pytest11`` entry point).

Fixtures here must work with and without pytest-django, so nothing in this
module imports Django at import time.
"""

from __future__ import annotations

import pytest

from .clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock`; layers built by ``channel_layer`` share it."""
    return FakeClock()


@pytest.fixture
def channel_layer(clock: FakeClock):
    """A fresh in-memory channel layer driven by the ``clock`` fixture."""
    from chanlite.layers.memory import InMemoryChannelLayer

    return InMemoryChannelLayer(clock=clock)
