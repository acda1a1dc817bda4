"""Fixtures of the layer tests (``clock`` and ``channel_layer`` come from
chanlite's own pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .redis_server import SHARED_URL


@pytest.fixture
def raw() -> Iterator[Any]:
    """A plain redis-py client on the shared server, to look at what a layer
    stored. redis-py is an optional extra: imported here, by the Redis tests
    that ask for it (they skip first when no server is reachable)."""
    import redis

    client = redis.Redis.from_url(SHARED_URL)
    yield client
    client.close()
