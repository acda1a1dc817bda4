"""The real chanlite server in the test process, for browser and real-client tests.

:class:`LiveServer` starts :class:`chanlite.server.server.Server` on a free
port of 127.0.0.1 with embedded worker threads, over a fresh in-memory layer
installed for the alias (real clock: the server's timeouts are real time),
and stops it — checking that it did stop — afterwards. Unlike Channels 1.x
(Daphne and a worker in forked processes, which broke in-memory databases
and needed a cross-process layer) everything is threads in this process.

An in-memory SQLite test database is private to the connection that made
it, so, like Django's ``LiveServerTestCase``, the server's WSGI and worker
threads share the test thread's connection (SQLite serialises access).
"""

from __future__ import annotations

import itertools
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test import TransactionTestCase
from django.test.utils import modify_settings

from .. import DEFAULT_CHANNEL_LAYER
from ..delay.embedded import start_embedded_delay
from ..layers import set_channel_layer
from ..layers.memory import InMemoryChannelLayer
from ..routing import as_router
from ..server.config import ServerConfig
from ..server.server import Server
from ..signals import worker_ready

__all__ = ["LiveServer", "ChannelLiveServerTestCase"]

_uids = itertools.count()


class LiveServer:
    """A chanlite server on a free port with embedded workers.

    Parameters:
        alias: the layer alias whose layer it replaces and whose routing it
            uses (``routing`` overrides the routing).
        workers: embedded worker threads (consumers run on them).
        threads: WSGI threads for ordinary Django views.
        layer: a layer to serve (default: a new in-memory layer).
        share_db: share in-memory SQLite connections with server threads.
        delay: run the delay service (``asgi.delay``) on a thread, as
            ``runserver`` does for the in-memory layer with workers.
        config: more :class:`~chanlite.server.config.ServerConfig` fields.
    """

    def __init__(self, alias: str = DEFAULT_CHANNEL_LAYER, routing: Any = None,
                 workers: int = 2, threads: int = 4, layer: Any = None,
                 host: str = "127.0.0.1", share_db: bool = True, delay: bool = True,
                 **config: Any) -> None:
        self.alias = alias
        self.routing = routing
        self.workers = workers
        self.threads = threads
        self.layer = layer
        self.host = host
        self.share_db = share_db
        self.delay = delay
        self.config = config
        self.server: Any = None
        self._delay_thread: Any = None
        self._previous_layer: Any = None
        self._overrides: dict[str, Any] = {}
        self._uid = f"chanlite.testing.live.{next(_uids)}"
        self._allowed_hosts: Any = None

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the live server is not running; call start() first")
        return self.server.address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``"""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``"""
        return f"ws://{self.host}:{self.port}"

    def start(self) -> LiveServer:
        """Bind, start the server thread and workers; return self once serving."""
        if self.server is not None:
            raise RuntimeError("this live server is already running")
        try:
            router = as_router(self.routing, self.alias)
        except ImproperlyConfigured:
            router = None  # no ROUTING: the server still serves Django views
        if self.layer is None:
            self.layer = InMemoryChannelLayer()
        self._previous_layer = set_channel_layer(self.alias, self.layer)
        # Django rejects a Host header not in ALLOWED_HOSTS (400); the test
        # runner only adds "testserver", as Django's LiveServerTestCase knows.
        self._allowed_hosts = modify_settings(ALLOWED_HOSTS={"append": self.host})
        self._allowed_hosts.enable()
        try:
            app = get_wsgi_application()
            if self.share_db:
                app = self._share_connections(app)
            config = ServerConfig(host=self.host, port=0, threads=self.threads, **self.config)
            self.server = Server(self.layer, config, wsgi_app=app, router=router,
                                 workers=self.workers if router is not None else 0)
            self.server.start()
            self._delay_thread = start_embedded_delay(
                self.layer, workers=self.server.workers, enabled=self.delay)
        except BaseException:
            self._cleanup()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server and its workers; True if every thread ended in time."""
        server, self.server = self.server, None
        stopped = True
        try:
            if self._delay_thread is not None:
                stopped = self._delay_thread.stop(timeout)
                self._delay_thread = None
            if server is not None:
                stopped = server.shutdown(timeout) and stopped
        finally:
            self._cleanup()
        return stopped

    def _cleanup(self) -> None:
        worker_ready.disconnect(dispatch_uid=self._uid)
        for conn in self._overrides.values():
            conn.dec_thread_sharing()
        self._overrides = {}
        if self._allowed_hosts is not None:
            self._allowed_hosts.disable()
            self._allowed_hosts = None
        set_channel_layer(self.alias, self._previous_layer)
        self._previous_layer = None

    def _share_connections(self, app: Any) -> Any:
        for conn in connections.all():
            if conn.vendor == "sqlite" and conn.is_in_memory_db():
                conn.inc_thread_sharing()
                self._overrides[conn.alias] = conn
        if not self._overrides:
            return app
        overrides = self._overrides

        def adopt() -> None:
            for alias, conn in overrides.items():
                connections[alias] = conn

        def on_worker_ready(sender: Any, worker: Any, **kwargs: Any) -> None:
            if worker.channel_layer is self.layer:
                adopt()  # runs in the worker thread: its connections[] is per thread

        worker_ready.connect(on_worker_ready, weak=False, dispatch_uid=self._uid)

        def shared_db_app(environ: dict, start_response: Any) -> Any:
            adopt()
            return app(environ, start_response)

        return shared_db_app

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if not self.stop():
            raise AssertionError("the chanlite live server did not stop within 10s")


class ChannelLiveServerTestCase(TransactionTestCase):
    """A ``TransactionTestCase`` with a live chanlite server for the class.

    ``live_server_url`` / ``live_server_ws_url`` point at it; consumers run
    on ``worker_threads`` embedded workers using the alias's routing (or
    ``live_server_routing``). The layer is flushed between tests.
    """

    host = "127.0.0.1"
    worker_threads = 2
    live_server_alias = DEFAULT_CHANNEL_LAYER
    live_server_routing: Any = None
    _live_server: LiveServer | None = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        live = LiveServer(cls.live_server_alias, cls.live_server_routing,
                          workers=cls.worker_threads, host=cls.host)
        live.start()
        cls._live_server = live
        cls.addClassCleanup(cls._stop_live_server)

    @classmethod
    def _stop_live_server(cls) -> None:
        live, cls._live_server = cls._live_server, None
        if live is not None and not live.stop():
            raise AssertionError(f"{cls.__name__}: the live server did not stop within 10s")

    def _post_teardown(self) -> None:
        # Flush after (not before) each test: Django 5.1+ runs _pre_setup
        # from setUpClass, before the server exists. The first test starts
        # on a brand-new layer anyway.
        if self._live_server is not None:
            self._live_server.layer.flush()
        super()._post_teardown()

    @classmethod
    def _live(cls) -> LiveServer:
        if cls._live_server is None:
            raise RuntimeError("the live server runs between setUpClass and tearDownClass only")
        return cls._live_server

    @property
    def live_server_url(self) -> str:
        return self._live().url

    @property
    def live_server_ws_url(self) -> str:
        return self._live().ws_url

    @property
    def channel_layer(self) -> Any:
        """The layer the live server and its workers use."""
        return self._live().layer
