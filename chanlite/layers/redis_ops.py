"""Operating the Redis layer: a readiness check and per-shard figures.

Used by ``manage.py chanlite_redis`` and meant for readiness probes::

    from chanlite.layers import get_channel_layer
    from chanlite.layers.redis_ops import health_check

    def ready(request):
        report = health_check(get_channel_layer())
        return JsonResponse(report, status=200 if report["ok"] else 503)

Neither function raises when a shard is down: an operator wants to see
*which* one, next to the healthy ones. Both only read (``INFO``, ``SCAN``,
``LLEN``/``ZCARD``), never ``KEYS`` (it would stall a big Redis).
"""

from __future__ import annotations

import re
import time
from typing import Any

from .redis import RedisChannelLayer, RedisUnavailable

__all__ = ["health_check", "shard_statistics", "queue_pattern"]

#: What a random token after ``!`` or ``?`` looks like (``new_channel``).
_TOKEN = re.compile(r"([!?])[A-Za-z0-9]+$")


def queue_pattern(queue: str) -> str:
    """``"http.response!Ab3x"`` -> ``"http.response!*"``: group per-connection
    queues so a stats listing shows kinds of channels, not thousands of names."""
    return _TOKEN.sub(r"\1*", queue)


def _info(host: Any, *sections: str) -> dict[str, str]:
    text = b"".join(host.execute("INFO", section) for section in sections).decode()
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key] = value
    return info


def _processes(host: Any) -> int:
    """Distinct chanlite processes of this prefix connected to ``host``
    (connections are named ``chanlite:<prefix>:<machine>:<pid>``)."""
    own = host.client_name + ":"
    names = set()
    for line in host.execute("CLIENT", "LIST").decode().splitlines():
        for field in line.split(" "):
            if field.startswith("name=") and field[5:].startswith(own):
                names.add(field[5:])
    return len(names)


def _check(layer: RedisChannelLayer) -> None:
    if not isinstance(layer, RedisChannelLayer):
        raise TypeError(
            f"this works on the Redis channel layer, not {type(layer).__name__}; "
            "check CHANNEL_LAYERS['...']['BACKEND']"
        )


def health_check(layer: RedisChannelLayer) -> dict[str, Any]:
    """``{"ok": every shard answers and is safe, "hosts": [per shard]}``.

    Per shard: ``host`` (its label, password hidden), ``ok``, ``latency_ms``
    of one ``INFO`` round trip, ``error`` (why not ok, or None) and
    ``warnings`` — e.g. a ``maxmemory-policy`` other than ``noeviction``,
    under which Redis silently deletes queues and groups when full.
    """
    _check(layer)
    hosts = []
    for host in layer._hosts:
        entry: dict[str, Any] = {"host": host.label, "ok": False, "latency_ms": None,
                                 "error": None, "warnings": []}
        start = time.perf_counter()
        try:
            info = _info(host, "memory", "replication")
        except RedisUnavailable as exc:
            entry["error"] = str(exc)
        else:
            entry["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
            entry["host"] = host.label  # a Sentinel shard's label names its master now
            if info.get("role") != "master":
                entry["error"] = f"{host.label} is a {info.get('role')}, not a master"
            else:
                entry["ok"] = True
            policy = info.get("maxmemory_policy", "")
            if policy and policy != "noeviction":
                entry["warnings"].append(
                    f"maxmemory-policy is {policy}: Redis may evict queued messages and "
                    "group memberships when full; set it to noeviction"
                )
        hosts.append(entry)
    return {"ok": all(entry["ok"] for entry in hosts), "hosts": hosts}


def shard_statistics(layer: RedisChannelLayer) -> list[dict[str, Any]]:
    """Per shard: memory, clients, groups and queued messages per channel pattern.

    ``queues`` maps :func:`queue_pattern` to the number of items queued
    (expired ones included until a receive or statistics call drops them);
    ``processes`` counts the chanlite processes using this prefix that are
    connected (by connection name ``chanlite:<prefix>:<machine>:<pid>``);
    ``connected_clients`` counts every connection to the server (each
    chanlite process opens one per thread, plus one for cancelling
    blocking pops).
    A down shard is listed with its ``error``.
    """
    _check(layer)
    qprefix = layer._qprefix.encode()
    gprefix = f"{layer.prefix}:g:".encode()
    shards = []
    for host in layer._hosts:
        entry: dict[str, Any] = {"host": host.label}
        try:
            info = _info(host, "memory", "clients")
            processes = _processes(host)
            queues: dict[str, int] = {}
            groups = 0
            for key in layer._own_keys(host, ":*"):
                if key.startswith(qprefix):
                    pattern = queue_pattern(key[len(qprefix):].decode())
                    queues[pattern] = queues.get(pattern, 0) + int(host.execute("LLEN", key))
                elif key.startswith(gprefix):
                    groups += 1
        except RedisUnavailable as exc:
            entry["error"] = str(exc)
        else:
            entry.update(
                used_memory=int(info.get("used_memory", 0)),
                maxmemory=int(info.get("maxmemory", 0)),
                maxmemory_policy=info.get("maxmemory_policy", ""),
                connected_clients=int(info.get("connected_clients", 0)),
                processes=processes,
                groups=groups,
                queues=dict(sorted(queues.items())),
            )
        shards.append(entry)
    return shards
