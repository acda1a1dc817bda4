"""``manage.py runworker``: run consumers for a cross-process channel layer.

    manage.py runworker [--layer ALIAS] [--only-channels GLOB ...]
                        [--exclude-channels GLOB ...] [--workers N]
                        [--drain-timeout SECONDS]

``--workers`` is the number of consumer threads, as in ``runserver`` and
``chanlite serve`` (``--threads`` is its deprecated spelling).

SIGTERM or SIGINT: stop taking messages, let running consumers finish (up to
``--drain-timeout``), exit 0 — so deploying new code is "restart workers one
at a time"; queued messages wait in the layer meanwhile. A second signal
exits at once with status 1.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chanlite import DEFAULT_CHANNEL_LAYER
from chanlite.layers import get_channel_layer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.routing import get_router
from chanlite.server.options import add_worker_option, deprecated_alias, show_defaults
from chanlite.worker_pool import GracefulShutdown, WorkerPool

logger = logging.getLogger("chanlite.worker")


def _flatten(values: list[list[str]] | None) -> list[str]:
    return [glob for group in values or [] for glob in group]


class Command(BaseCommand):
    help = (
        "Run chanlite consumers: receive from the channels the layer's ROUTING names "
        "and run their consumers on a pool of threads until SIGTERM/SIGINT."
    )
    # Checks run first (a routing that cannot be imported, a bad CONFIG...),
    # as for runserver; --skip-checks skips them.
    requires_system_checks = "__all__"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--layer", default=DEFAULT_CHANNEL_LAYER,
            help="CHANNEL_LAYERS alias to use (default: %(default)s).",
        )
        parser.add_argument(
            "--only-channels", action="append", nargs="+", metavar="GLOB",
            help="Only take messages from channels matching these globs (repeatable), "
            "e.g. --only-channels 'websocket.*' 'http.*' (default: every routed channel).",
        )
        parser.add_argument(
            "--exclude-channels", action="append", nargs="+", metavar="GLOB",
            help="Never take messages from channels matching these globs (repeatable) "
            "(default: none excluded).",
        )
        add_worker_option(parser, 4, "4")
        deprecated_alias(parser, "--threads", "--workers", dest="workers")
        parser.add_argument(
            "--drain-timeout", type=float, default=30.0,
            help="Seconds to let running consumers finish after SIGTERM (default: %(default)s).",
        )
        show_defaults(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["layer"]
        if options["workers"] < 1:
            raise CommandError(f"--workers must be at least 1, not {options['workers']}")
        try:
            router = get_router(alias)  # first: a routing error should not create a layer
            layer = get_channel_layer(alias)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if isinstance(layer, InMemoryChannelLayer):
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] is the in-memory layer, which other processes "
                "cannot reach, so this worker would never get a message. Use "
                "'chanlite.layers.ipc.IPCChannelLayer' (one host) or "
                "'chanlite.layers.redis.RedisChannelLayer', or let runserver run the "
                "consumers in-process"
            )
        try:
            pool = WorkerPool(
                layer, router, threads=options["workers"],
                only_channels=_flatten(options["only_channels"]),
                exclude_channels=_flatten(options["exclude_channels"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        shutdown = GracefulShutdown(pool, drain_timeout=options["drain_timeout"])
        shutdown.install()
        pool.start()
        self.stdout.write(
            f"Worker: {options['workers']} consumer thread(s) on layer {alias!r} listening on "
            f"{', '.join(pool.channels)}"
        )
        self.stdout.flush()
        def stopping(busy: int) -> None:
            self.stdout.write(f"Worker: stopping; waiting for {busy} running consumer(s)")
            self.stdout.flush()

        drained = shutdown.wait(on_stopping=stopping)
        if pool.failure:
            raise CommandError(f"Worker: stopped because {pool.failure}")
        if drained:
            self.stdout.write("Worker: stopped; every running consumer finished")
        else:
            self.stderr.write(
                f"Worker: consumers still running after --drain-timeout "
                f"{options['drain_timeout']}s were abandoned"
            )
        self.stdout.flush()
