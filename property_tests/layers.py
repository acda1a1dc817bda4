"""The channel layers every property test runs against.

Why a registry: the semantics (FIFO, expiry, at-most-once, capacity, groups,
statistics) are the same for every layer, so the state machine and the
concurrency property are written once and parametrised over this list.

Adding a layer (IPC, Redis, ...) is ONE entry in :data:`LAYERS`::

    LAYERS["ipc"] = LayerEntry(
        make=lambda clock, **config: IPCChannelLayer(prefix=unique(), clock=clock, **config),
        close=lambda layer: layer.close(),          # release shm segments, sockets
        unavailable=lambda: None,                   # or "redis not reachable" to skip
    )

- ``make(clock, **config)`` must return a *fresh, empty* layer that takes its
  time from ``clock`` (a :class:`~chanlite.testing.clock.FakeClock`) and
  accepts the base-layer ``config`` keywords (``expiry``, ``group_expiry``,
  ``capacity``, ``channel_capacity``). It is called once per Hypothesis
  example, so give each layer its own namespace (prefix, Redis db/key prefix)
  or flush it here.
- ``close(layer)`` runs after every example, even a failing one.
- ``unavailable()`` returns ``None`` when the layer can run here, or the
  reason it cannot (the test is then skipped with that reason printed — use
  it only for missing external services, never to hide a failing layer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chanlite.layers.base import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing.clock import FakeClock

__all__ = ["LayerEntry", "LAYERS"]


def _nothing(layer: BaseChannelLayer) -> None:
    """Default ``close``: nothing to release."""


def _available() -> str | None:
    """Default ``unavailable``: the layer can always run."""
    return None


@dataclass(frozen=True)
class LayerEntry:
    """How to build, release and check the availability of one layer."""

    make: Callable[..., BaseChannelLayer]
    close: Callable[[BaseChannelLayer], None] = _nothing
    unavailable: Callable[[], str | None] = _available

    def build(self, clock: FakeClock, **config: Any) -> BaseChannelLayer:
        return self.make(clock, **config)


LAYERS: dict[str, LayerEntry] = {
    "memory": LayerEntry(make=lambda clock, **config: InMemoryChannelLayer(clock=clock, **config)),
}


def _redis_unavailable() -> str | None:
    """Skip reason when no Redis answers at 127.0.0.1:6379 (or redis-py is missing)."""
    try:
        import redis

        redis.Redis.from_url(_REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot run here"
        return f"no Redis reachable at {_REDIS_URL} ({exc})"
    return None


def _redis_make(clock: FakeClock, **config: Any) -> BaseChannelLayer:
    """A Redis layer under a fresh key prefix, so examples never see each other."""
    import uuid

    from chanlite.layers.redis import RedisChannelLayer

    return RedisChannelLayer(
        hosts=[_REDIS_URL], prefix=f"chanlite-prop-{uuid.uuid4().hex[:12]}", clock=clock, **config
    )


def _redis_close(layer: BaseChannelLayer) -> None:
    layer.flush()  # deletes only this example's prefix
    layer.close()  # type: ignore[attr-defined]


_REDIS_URL = "redis://127.0.0.1:6379/0"
LAYERS["redis"] = LayerEntry(make=_redis_make, close=_redis_close, unavailable=_redis_unavailable)
# The same rules must hold with sealed bodies (symmetric_encryption_keys):
# encryption wraps storage, it must not change a single semantic.
LAYERS["redis-encrypted"] = LayerEntry(
    make=lambda clock, **config: _redis_make(
        clock, symmetric_encryption_keys=["property-key"], **config),
    close=_redis_close, unavailable=_redis_unavailable,
)


def _ipc_make(clock: FakeClock, **config: Any) -> BaseChannelLayer:
    """An IPC layer on a fresh prefix (its own /dev/shm segment), small tables."""
    import os
    import uuid

    from chanlite.layers.ipc import IPCChannelLayer

    return IPCChannelLayer(
        prefix=f"prop{os.getpid()}-{uuid.uuid4().hex[:10]}", clock=clock,
        memory=4 << 20, max_channels=512, max_groups=64, **config,
    )


def _ipc_close(layer: BaseChannelLayer) -> None:
    layer.check()  # type: ignore[attr-defined]  # every shared-memory invariant holds
    layer.remove()  # type: ignore[attr-defined]  # nothing left in /dev/shm


LAYERS["ipc"] = LayerEntry(make=_ipc_make, close=_ipc_close)
