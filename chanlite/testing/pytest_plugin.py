"""pytest plugin for chanlite (registered through the ``pytest11`` entry point).

Fixtures: ``clock``, ``channel_layer``, ``routes``, ``ws_client``,
``http_client``, ``live_server_ws``. Markers: ``chanlite_layers(...)`` runs a
test once per layer kind (``"memory"``, ``"ipc"``); ``chanlite_routes(routes)``
applies routes for the test (and its live server). Option
``--chanlite-layer=KIND`` (repeatable) picks the kinds for unmarked tests.

Fixtures here must work with and without pytest-django, so nothing in this
module imports Django at import time, and database access is only requested
(``transactional_db``) where a server thread may need it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from ..layers import set_channel_layer
from .clock import FakeClock
from .http import HttpClient
from .layers import ipc_test_layer, make_test_layer, remove_ipc_test_layer
from .live import LiveServer
from .routes import apply_routes
from .websocket import WSClient

LAYER_KINDS = ("memory", "ipc")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chanlite")
    group.addoption(
        "--chanlite-layer", action="append", choices=LAYER_KINDS, default=None,
        dest="chanlite_layer",
        help="run tests using the channel_layer fixture on this layer kind (repeatable; "
             "default: memory). Tests marked chanlite_layers(...) choose their own.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "chanlite_layers(*kinds): run the test once per channel layer kind "
        "('memory', 'ipc') through the channel_layer fixture",
    )
    config.addinivalue_line(
        "markers", "chanlite_routes(routes): apply these routes for the test (routes fixture)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "_chanlite_layer_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("chanlite_layers")
    if marker is not None:
        kinds = list(marker.args)
    else:
        kinds = metafunc.config.getoption("chanlite_layer") or ["memory"]
    unknown = [k for k in kinds if k not in LAYER_KINDS]
    if unknown or not kinds:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: chanlite_layers takes some of {LAYER_KINDS}, "
            f"not {kinds!r}"
        )
    if kinds != ["memory"]:
        metafunc.parametrize("_chanlite_layer_kind", list(dict.fromkeys(kinds)), indirect=True,
                             ids=lambda kind: f"layer-{kind}")


@pytest.fixture
def clock() -> FakeClock:
    """A fresh :class:`FakeClock`; layers built by ``channel_layer`` share it."""
    return FakeClock()


@pytest.fixture
def _chanlite_layer_kind(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "memory")


@pytest.fixture
def channel_layer(clock: FakeClock, _chanlite_layer_kind: str) -> Iterator[Any]:
    """A fresh layer driven by ``clock``, installed as the ``"default"`` alias.

    In-memory unless the test is parametrized for IPC (marker or option):
    then an IPC layer on a unique prefix, removed from /dev/shm afterwards.
    ``Channel``/``Group`` without an explicit layer, clients and
    ``run_until_idle`` all use it; the previous layer comes back after.
    """
    if _chanlite_layer_kind == "ipc":
        if importlib.util.find_spec("posix_ipc") is None:  # pragma: no cover - host
            # Only a missing posix_ipc is a reason to skip; an ImportError
            # from chanlite.layers.ipc itself is a bug and must fail the test.
            pytest.skip("the IPC layer is not available here: posix_ipc is not installed")
        layer = ipc_test_layer(clock)
    else:
        layer = make_test_layer("default", clock)
    previous = set_channel_layer("default", layer)
    try:
        yield layer
    finally:
        set_channel_layer("default", previous)
        if _chanlite_layer_kind == "ipc":
            remove_ipc_test_layer(layer)


@pytest.fixture(autouse=True)
def _chanlite_marked_routes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply ``@pytest.mark.chanlite_routes(routes)`` around the whole test
    (autouse, so it is in place before any client or live server fixture)."""
    marker = request.node.get_closest_marker("chanlite_routes")
    if marker is None:
        yield
        return

    with apply_routes(*marker.args, **marker.kwargs):
        yield


@pytest.fixture
def routes() -> Iterator[Callable[..., Any]]:
    """``routes([route(...), ...], aliases=("default",))`` applies routes until
    the test ends and returns the Router. (For routes that must be in place
    before other fixtures, e.g. ``live_server_ws``, use the
    ``@pytest.mark.chanlite_routes(routes)`` marker.)"""
    applied: list[apply_routes] = []

    def apply(new_routes: Any, aliases: Any = ("default",)) -> Any:
        patch = apply_routes(new_routes, aliases)
        router = patch.enter()
        applied.append(patch)
        return router

    try:
        yield apply
    finally:
        for patch in reversed(applied):
            patch.exit()


@pytest.fixture
def ws_client(channel_layer: Any, routes: Any) -> Any:
    """A :class:`~chanlite.testing.WSClient` on the ``channel_layer`` fixture's layer."""
    return WSClient()


@pytest.fixture
def http_client(channel_layer: Any, routes: Any) -> Any:
    """A :class:`~chanlite.testing.HttpClient` on the ``channel_layer`` fixture's layer."""
    return HttpClient()


@pytest.fixture
def live_server_ws(request: pytest.FixtureRequest, routes: Any) -> Iterator[Any]:
    """A running chanlite server with embedded workers (a :class:`LiveServer`):
    ``.url``, ``.ws_url``, ``.layer``. Under pytest-django the test gets
    ``transactional_db``, so views and consumers on server threads can use
    the database."""
    if request.config.pluginmanager.hasplugin("django"):
        if settings.configured and settings.DATABASES:
            request.getfixturevalue("transactional_db")
    server = LiveServer().start()
    try:
        yield server
    finally:
        assert server.stop(), "the chanlite live server did not stop within 10s"
