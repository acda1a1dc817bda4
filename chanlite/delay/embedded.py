"""The delay service on a thread, for one-process deployments.

``runserver`` and ``chanlite serve`` with embedded workers on the in-memory
layer are the whole deployment: no other process could run ``rundelay``
(none can reach the layer), so they run the service themselves, on a daemon
thread, with a :class:`~chanlite.delay.store.MemoryStore` — its messages die
with the process, like everything else in that layer. ``--nodelay`` turns
it off. On a cross-process layer the service is ``manage.py rundelay``'s job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..layers.memory import InMemoryChannelLayer
from .service import DelayService

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer

__all__ = ["DelayThread", "start_embedded_delay", "embedded_delay"]

logger = logging.getLogger("chanlite.delay")


class DelayThread:
    """A :class:`DelayService` running on a daemon thread; ``stop()`` ends it."""

    def __init__(self, channel_layer: BaseChannelLayer) -> None:
        self.service = DelayService(channel_layer)
        self.thread = threading.Thread(target=self.service.run, name="chanlite-delay",
                                       daemon=True)

    def start(self) -> DelayThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the service; True if its thread ended within ``timeout``."""
        self.service.stop()
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_embedded_delay(channel_layer: BaseChannelLayer, *, workers: int,
                         enabled: bool = True) -> DelayThread | None:
    """Start the delay thread if this process is the whole deployment.

    That is: ``enabled`` (no ``--nodelay``), embedded ``workers`` > 0 and the
    in-memory layer. Returns the running thread (``stop()`` it on shutdown)
    or None, logging why not when delayed messages would otherwise wait
    for a ``rundelay`` that must be started separately.
    """
    if not enabled:
        return None
    if not isinstance(channel_layer, InMemoryChannelLayer):
        logger.info("delay: not run here (%s is shared with other processes); run "
                    "`manage.py rundelay` to serve asgi.delay", type(channel_layer).__name__)
        return None
    if not workers:
        return None
    return DelayThread(channel_layer).start()


@contextmanager
def embedded_delay(channel_layer: BaseChannelLayer, *, workers: int,
                   enabled: bool = True) -> Iterator[DelayThread | None]:
    """:func:`start_embedded_delay` for the duration of a ``with`` block
    (the commands wrap ``serve_forever`` in it); stopped however it ends."""
    delay = start_embedded_delay(channel_layer, workers=workers, enabled=enabled)
    try:
        yield delay
    finally:
        if delay is not None:
            delay.stop()
