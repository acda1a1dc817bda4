"""``manage.py runserver`` with WebSockets, long-poll and embedded workers.

Replaces Django's runserver when ``chanlite`` is in INSTALLED_APPS (list it
*before* ``django.contrib.staticfiles``, whose own runserver would otherwise
win). Everything Django's command does is kept - address parsing, system
checks, the migration warning, autoreload, the banner, static files in DEBUG
- but requests are served by chanlite's interface server, with consumers
running on embedded worker threads over the default channel layer, so one
process is a complete realtime development setup.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from datetime import datetime
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management.base import CommandError
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.db import connections
from django.utils import autoreload

from chanlite.checks import check_embedded_workers, raise_if_errors
from chanlite.delay.embedded import embedded_delay
from chanlite.layers import get_channel_layer
from chanlite.routing import NoRouting, get_router
from chanlite.server.config import ServerConfig
from chanlite.server.options import (
    add_server_options,
    add_worker_option,
    deprecated_alias,
    server_overrides,
    show_defaults,
    with_default,
)
from chanlite.server.server import Server


class Command(DjangoRunserver):
    help = (
        "Starts a development server for HTTP and WebSocket: Django views plus chanlite "
        "consumers running on embedded worker threads."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noworker", action="store_false", dest="run_worker",
            help="Do not run embedded workers, same as --workers 0 (consumers run in "
            "`manage.py runworker` processes on a cross-process layer).",
        )
        add_worker_option(parser, 4, "4")
        parser.add_argument(
            "--layer", default="default",
            help=with_default("CHANNEL_LAYERS alias to serve", "'default'"),
        )
        parser.add_argument(
            "--nostatic", action="store_false", dest="use_static_handler",
            help="Do not serve static files automatically in DEBUG.",
        )
        parser.add_argument(
            "--insecure", action="store_true", dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )
        parser.add_argument(
            "--nodelay", action="store_false", dest="run_delay",
            help="Do not run the delay service (asgi.delay) in-process; it runs only for "
            "the in-memory layer with embedded workers.",
        )
        parser.add_argument(
            "--proxy-headers", action="store_true", default=None,
            help="Trust X-Forwarded-For/-Port/-Proto and Daphne-Root-Path from "
            "CHANLITE_SERVER['trusted_proxies'] (default 127.0.0.1, ::1).",
        )
        add_server_options(parser)
        deprecated_alias(parser, "--threads", "--workers", dest="workers")
        show_defaults(parser, {"--nothreading": "Django views run on --http-threads threads; "
                               "with this flag, one at a time (same as --http-threads 1)"})

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """Django's WSGI app, wrapped to serve static files like staticfiles' runserver."""
        handler = super().get_handler(*args, **options)
        use_static = options.get("use_static_handler", True)
        insecure = options.get("insecure_serving", False)

        if use_static and (settings.DEBUG or insecure) and apps.is_installed(
            "django.contrib.staticfiles"
        ):
            return StaticFilesHandler(handler)
        return handler

    def on_bind(self, server_port: int) -> None:
        """Kept for Django's API; the banner is printed by :meth:`banner`."""

    def banner(self, server: Any) -> None:
        """One banner: Django's lines (its wording changes between versions -
        6.x says "WSGI development server", which this is not - and tools and
        tests read "Starting development server at") plus what chanlite runs."""
        if getattr(self, "_raw_ipv6", False):
            addr = f"[{self.addr}]"
        elif self.addr == "0":
            addr = "0.0.0.0"
        else:
            addr = self.addr
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        self.stdout.write(
            f"{datetime.now().strftime('%B %d, %Y - %X')}\n"
            f"Django version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting development server at {self.protocol}://{addr}:{server.address[1]}/\n"
            f"chanlite: HTTP and WebSocket, {', '.join(server.banner_parts())}\n"
            f"Quit the server with {quit_command}. In production run `chanlite serve` "
            "(docs/server.md)."
        )
        self.stdout.flush()

    @staticmethod
    def _delay_service(layer: Any, workers: int, options: dict) -> Any:
        """The in-process delay service around serving (``--nodelay``: none)."""
        return embedded_delay(layer, workers=workers, enabled=options.get("run_delay", True))

    def inner_run(self, *args: Any, **options: Any) -> None:
        autoreload.raise_last_exception()
        alias = options.get("layer", "default")
        try:
            # First, as Django imports urls.py: a routing that fails to import
            # stops here with its traceback (under autoreload the thread dies,
            # the broken file is watched and a fix restarts the server).
            router = get_router(alias)
        except NoRouting:
            router = None  # a plain Django project: views only
        workers = options["workers"] if options.get("run_worker", True) else 0
        if workers < 0:
            raise CommandError(f"--workers must be 0 or more, not {workers}")
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            # BaseCommand.get_check_kwargs exists from Django 5.2; 4.2 checks everything.
            get_check_kwargs = getattr(super(DjangoRunserver, self), "get_check_kwargs", None)
            check_kwargs = get_check_kwargs(options) if get_check_kwargs else {}
            check_kwargs["display_num_errors"] = True
            self.check(**check_kwargs)
            raise_if_errors(check_embedded_workers(alias, workers, "runserver --noworker"))
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()

        layer = get_channel_layer(alias)
        overrides = server_overrides(options)
        overrides["proxy_headers"] = options.get("proxy_headers")
        if not options.get("use_threading", True):
            overrides["threads"] = 1  # --nothreading: views one at a time
        try:
            config = ServerConfig.from_settings(host=self.addr, port=int(self.port), **overrides)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if router is None or not router.channels:
            workers = 0  # nothing routed: the banner says so
        try:
            server = Server(layer, config, wsgi_app=self.get_handler(*args, **options),
                            router=router, workers=workers, access_logger="django.server")
            server.bind()
        except ValueError as exc:  # limits that do not fit the layer
            self.stderr.write(f"Error: {exc}")
            os._exit(1)  # sys.exit does not work from the autoreloader's thread
        except OSError as exc:
            messages = {
                errno.EACCES: "You don't have permission to access that port.",
                errno.EADDRINUSE: "That port is already in use.",
                errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
            }
            self.stderr.write(f"Error: {messages.get(exc.errno, exc)}")
            os._exit(1)  # sys.exit does not work from the autoreloader's thread
        self.banner(server)
        if threading.current_thread() is threading.main_thread():
            server.install_signal_handlers()
        try:
            with self._delay_service(layer, workers, options):
                server.serve_forever()
            if server.failure:
                self.stderr.write(f"Error: the server stopped because {server.failure}")
                os._exit(1)  # sys.exit does not work from the autoreloader's thread
        except KeyboardInterrupt:
            shutdown_message = options.get("shutdown_message", "")
            if shutdown_message:
                self.stdout.write(shutdown_message)
            sys.exit(0)
