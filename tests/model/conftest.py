"""Fixtures of the programming-model tests (routing, consumers, sessions,
ordering, worker, channel, binding, delay)."""

from __future__ import annotations

import pytest

from chanlite.signals import db_hygiene_disabled


@pytest.fixture(autouse=True)
def consumer_db_hygiene(request):
    """Tests not marked for the database run consumers without close_old_connections:
    pytest-django forbids touching a connection a previous test left open."""
    if request.node.get_closest_marker("django_db") is not None:
        yield
        return
    with db_hygiene_disabled():
        yield


@pytest.fixture
def layer(channel_layer):
    """The plugin's ``channel_layer`` (a fresh in-memory layer on a fake clock,
    installed as "default"), under the name these tests have always used."""
    return channel_layer
