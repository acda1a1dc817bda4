"""Shared fixtures for the programming-model tests (import them into a test module)."""

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
