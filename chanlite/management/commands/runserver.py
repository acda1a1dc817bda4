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
from typing import Any

from django.conf import settings
from django.core.management.commands.runserver import Command as DjangoRunserver
from django.db import connections

#: runserver options that are ServerConfig fields (None: from settings / default).
_SERVER_OPTIONS = ("proxy_headers", "max_connections", "max_queued_requests", "max_body_memory",
                   "body_spool_threshold", "body_idle_timeout", "body_timeout",
                   "backpressure_timeout")


class Command(DjangoRunserver):
    help = (
        "Starts a development server for HTTP and WebSocket: Django views plus chanlite "
        "consumers running on embedded worker threads."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noworker", action="store_false", dest="run_worker",
            help="Do not run embedded workers (consumers run in `manage.py runworker` "
            "processes on a cross-process layer).",
        )
        parser.add_argument(
            "--threads", type=int, default=4,
            help="Number of embedded worker threads running consumers (default 4).",
        )
        parser.add_argument(
            "--layer", default="default",
            help="CHANNEL_LAYERS alias to serve (default 'default').",
        )
        parser.add_argument(
            "--nodelay", action="store_false", dest="run_delay",
            help="Do not run the delay service (asgi.delay) in-process; it runs only for "
            "the in-memory layer with embedded workers.",
        )
        parser.add_argument(
            "--backpressure-timeout", type=float, default=None, metavar="SECONDS",
            help="Seconds a connection whose channel is full waits (not read) for room "
            "before it gets 1013 / 503 (default: CHANLITE_SERVER['backpressure_timeout'] "
            "or 10).",
        )
        parser.add_argument(
            "--nostatic", action="store_false", dest="use_static_handler",
            help="Do not serve static files automatically in DEBUG.",
        )
        parser.add_argument(
            "--insecure", action="store_true", dest="insecure_serving",
            help="Serve static files even if DEBUG is False.",
        )
        # Server limits (also settings.CHANLITE_SERVER keys; a flag wins).
        parser.add_argument(
            "--proxy-headers", action="store_true", default=None,
            help="Trust X-Forwarded-For/-Port/-Proto and Daphne-Root-Path from "
            "CHANLITE_SERVER['trusted_proxies'] (default 127.0.0.1, ::1).",
        )
        parser.add_argument("--max-connections", type=int, default=None,
                            help="Open connections before the server stops accepting.")
        parser.add_argument("--max-queued-requests", type=int, default=None,
                            help="Views waiting for a thread before 503 + Retry-After.")
        parser.add_argument("--max-body-memory", type=int, default=None,
                            help="Request body bytes held in memory by all connections.")
        parser.add_argument("--body-spool-threshold", type=int, default=None,
                            help="Request body bytes above which a body goes to a temp file.")
        parser.add_argument("--body-idle-timeout", type=float, default=None,
                            help="Seconds without a request body byte before 408.")
        parser.add_argument("--body-timeout", type=float, default=None,
                            help="Seconds for a whole request body before 408.")

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """Django's WSGI app, wrapped to serve static files like staticfiles' runserver."""
        handler = super().get_handler(*args, **options)
        use_static = options.get("use_static_handler", True)
        insecure = options.get("insecure_serving", False)
        from django.apps import apps

        if use_static and (settings.DEBUG or insecure) and apps.is_installed(
            "django.contrib.staticfiles"
        ):
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            return StaticFilesHandler(handler)
        return handler

    def on_bind(self, server_port: int) -> None:
        """Print the banner ourselves: Django's wording changes between
        versions (6.x says "WSGI development server", which this is not), and
        tools and tests read the "Starting development server at" line."""
        from datetime import datetime

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
            f"Starting development server at {self.protocol}://{addr}:{server_port}/\n"
            f"Quit the server with {quit_command}.\n"
            "This chanlite server serves HTTP and WebSocket; in production run "
            "`chanlite serve` (docs/server.md)."
        )

    @staticmethod
    def _delay_service(layer: Any, workers: int, options: dict) -> Any:
        """The in-process delay service around serving (``--nodelay``: none)."""
        from chanlite.delay.embedded import embedded_delay

        return embedded_delay(layer, workers=workers, enabled=options.get("run_delay", True))

    def inner_run(self, *args: Any, **options: Any) -> None:
        from django.utils import autoreload

        from chanlite.layers import get_channel_layer
        from chanlite.server.config import ServerConfig
        from chanlite.server.server import Server

        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            # BaseCommand.get_check_kwargs exists from Django 5.2; 4.2 checks everything.
            get_check_kwargs = getattr(super(DjangoRunserver, self), "get_check_kwargs", None)
            check_kwargs = get_check_kwargs(options) if get_check_kwargs else {}
            check_kwargs["display_num_errors"] = True
            self.check(**check_kwargs)
        self.check_migrations()
        for conn in connections.all(initialized_only=True):
            conn.close()

        layer = get_channel_layer(options.get("layer", "default"))
        workers = options["threads"] if options.get("run_worker", True) else 0
        try:
            config = ServerConfig.from_settings(
                host=self.addr, port=int(self.port),
                **{name: options.get(name) for name in _SERVER_OPTIONS},
            )
            server = Server(layer, config, wsgi_app=self.get_handler(*args, **options),
                            workers=workers, access_logger="django.server")
            server.bind()
        except ValueError as exc:  # CHANLITE_SERVER values, or limits that do not fit the layer
            self.stderr.write(f"Error: {exc}")
            os._exit(1)
        except OSError as exc:
            messages = {
                errno.EACCES: "You don't have permission to access that port.",
                errno.EADDRINUSE: "That port is already in use.",
                errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
            }
            self.stderr.write(f"Error: {messages.get(exc.errno, exc)}")
            os._exit(1)  # sys.exit does not work from the autoreloader's thread
        self.on_bind(server.address[1])
        if server.router is None or not server.router.channels:
            workers = 0  # nothing routed: the server logs why
        self.stdout.write(
            f"chanlite: layer {layer.alias!r} ({type(layer).__name__}), "
            + (f"{workers} embedded worker thread(s)" if workers else "no embedded workers")
        )
        if threading.current_thread() is threading.main_thread():
            server.install_signal_handlers()
        try:
            with self._delay_service(layer, workers, options):
                server.serve_forever()
        except KeyboardInterrupt:
            shutdown_message = options.get("shutdown_message", "")
            if shutdown_message:
                self.stdout.write(shutdown_message)
            sys.exit(0)
