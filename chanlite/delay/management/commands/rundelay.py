"""``manage.py rundelay``: the delay service for the IPC and Redis layers.

    manage.py rundelay [--layer ALIAS] [--database ALIAS]

Takes ``asgi.delay`` requests off the layer, keeps them in the database
(table of ``chanlite.delay``, which must be in INSTALLED_APPS and migrated)
and sends each message when its delay is up. A restart loses nothing that
was stored and sends nothing twice (docs/delay.md says exactly what is late
and what can be lost). SIGTERM or SIGINT stops it (exit 0).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from chanlite import DEFAULT_CHANNEL_LAYER
from chanlite.delay.service import DelayService
from chanlite.delay.store import DatabaseStore
from chanlite.layers import get_channel_layer
from chanlite.layers.memory import InMemoryChannelLayer


class Command(BaseCommand):
    help = (
        "Run the delay service: deliver messages sent to 'asgi.delay' after their delay, "
        "keeping them in the database meanwhile (for the IPC and Redis layers)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--layer", default=DEFAULT_CHANNEL_LAYER,
            help="CHANNEL_LAYERS alias to serve (default: %(default)s).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS,
            help="Database alias holding the delayed messages (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["layer"]
        try:
            layer = get_channel_layer(alias)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if isinstance(layer, InMemoryChannelLayer):
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer, which other processes "
                "cannot reach. runserver and `chanlite serve` already run the delay "
                "service in-process for it; use rundelay with the IPC or Redis layer"
            )
        store = DatabaseStore(options["database"])
        try:
            stored = store.count()
        except DatabaseError as exc:
            raise CommandError(
                f"cannot read the delayed-message table ({exc}). Run `manage.py migrate "
                "chanlite_delay` (with 'chanlite.delay' in INSTALLED_APPS) first"
            ) from exc
        service = DelayService(layer, store)
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()
            service.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        # The loop runs on a thread so that the signal handler (main thread)
        # never runs inside a half-done store or layer call.
        thread = threading.Thread(target=service.run, name="chanlite-delay")
        thread.start()
        self.stdout.write(f"Delay: layer {alias!r} ({type(layer).__name__}), "
                          f"{stored} stored message(s); listening on asgi.delay")
        self.stdout.flush()
        while thread.is_alive() and not stop.wait(1.0):
            pass
        service.stop()
        thread.join()
        self.stdout.write(f"Delay: stopped; {service.pending} message(s) kept for the next run")
        self.stdout.flush()
