"""``manage.py chanlite_redis``: per-shard figures, health, or a prefix flush.

    manage.py chanlite_redis [--layer ALIAS] (--stats | --health | --flush --prefix PREFIX)
                             [--json]

``--stats`` lists, per shard, memory, maxmemory and its policy, connected
chanlite processes (of this prefix) and clients, groups and queued messages
per channel pattern; ``--health`` runs
:func:`~chanlite.layers.redis_ops.health_check` and exits 1 when a shard is
down or unsafe (for scripts and probes); ``--flush --prefix P`` deletes
every message, group and statistic under prefix ``P`` on every shard of the
layer (only keys chanlite made under exactly that prefix).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chanlite.layers import InvalidChannelLayerError, layer_settings
from chanlite.layers import build_layer as _build_layer
from chanlite.layers.redis import RedisChannelLayer, RedisUnavailable
from chanlite.layers.redis_ops import health_check, shard_statistics


class Command(BaseCommand):
    help = (
        "Show per-shard figures (--stats), check health (--health) or delete one prefix's "
        "keys (--flush --prefix P) of a chanlite Redis channel layer."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--layer", default="default",
                            help="CHANNEL_LAYERS alias of a Redis layer (default: %(default)s).")
        parser.add_argument("--prefix", help="key prefix to act on (default: the layer's).")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--stats", action="store_true",
                            help="Per shard: memory, clients, groups, queued messages per "
                            "channel pattern.")
        action.add_argument("--health", action="store_true",
                            help="Check every shard answers as a master with noeviction; "
                            "exit status 1 if not.")
        action.add_argument("--flush", action="store_true",
                            help="Delete every message, group and statistic under --prefix "
                            "(required) on every shard.")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def _layer(self, options: dict[str, Any]) -> Any:
        alias = options["layer"]
        overrides = {"prefix": options["prefix"]} if options["prefix"] else {}
        try:
            backend = layer_settings(alias)["BACKEND"]
            layer = _build_layer(alias, **overrides)
        except InvalidChannelLayerError as exc:
            raise CommandError(str(exc)) from exc
        if not isinstance(layer, RedisChannelLayer):
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] uses {backend}, not a Redis layer; "
                "pass --layer naming one"
            )
        return layer

    def handle(self, *args: Any, **options: Any) -> None:
        if options["flush"] and not options["prefix"]:
            raise CommandError(
                "--flush needs --prefix naming the key prefix to delete (the layer's "
                "'prefix' CONFIG, 'chanlite' by default): a guard against flushing "
                "another project's keys"
            )
        layer = self._layer(options)
        try:
            if options["flush"]:
                try:
                    layer.flush()
                except RedisUnavailable as exc:
                    raise CommandError(f"flush incomplete: {exc}") from exc
                self.stdout.write(
                    f"flushed prefix {layer.prefix!r} on {len(layer.hosts)} shard(s)"
                )
            elif options["health"]:
                report = health_check(layer)
                if options["json"]:
                    self.stdout.write(json.dumps(report, indent=2))
                else:
                    for host in report["hosts"]:
                        state = "ok" if host["ok"] else "DOWN"
                        detail = f"{host['latency_ms']} ms" if host["ok"] else host["error"]
                        self.stdout.write(f"{state:5} {host['host']}: {detail}")
                        for warning in host["warnings"]:
                            self.stdout.write(f"      warning: {warning}")
                if not report["ok"]:
                    bad = sum(not host["ok"] for host in report["hosts"])
                    raise CommandError(f"{bad} of {len(report['hosts'])} shard(s) not healthy")
            else:
                shards = shard_statistics(layer)
                if options["json"]:
                    self.stdout.write(json.dumps(shards, indent=2))
                else:
                    self._print_stats(layer, shards)
        finally:
            layer.close()

    def _print_stats(self, layer: Any, shards: list[dict[str, Any]]) -> None:
        self.stdout.write(f"prefix {layer.prefix!r}, {len(shards)} shard(s)")
        for shard in shards:
            self.stdout.write(f"\n{shard['host']}")
            if "error" in shard:
                self.stdout.write(f"  DOWN: {shard['error']}")
                continue
            limit = shard["maxmemory"] or "unlimited"
            self.stdout.write(
                f"  memory {shard['used_memory']} bytes of {limit} "
                f"(policy {shard['maxmemory_policy']})"
            )
            self.stdout.write(
                f"  connected processes {shard['processes']} (this prefix), "
                f"clients {shard['connected_clients']} (all)"
            )
            self.stdout.write(f"  groups {shard['groups']}")
            if not shard["queues"]:
                self.stdout.write("  no queued messages")
            for pattern, count in shard["queues"].items():
                self.stdout.write(f"  queue {pattern}: {count} queued")
