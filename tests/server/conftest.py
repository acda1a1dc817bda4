"""Fixtures of the server tests: the live server on both layers.

``chanlite_server`` itself is shared with security/ (tests/conftest.py).
"""

from .server_fixtures import ipc_runworker, layered_server  # noqa: F401 (fixtures)
