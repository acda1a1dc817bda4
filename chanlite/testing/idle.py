"""Run consumers in the test's own thread until nothing is left to do.

A test that starts a chain of messages (a connect that joins a group, a
receive that fans out to the group, a background task queued by a consumer)
wants "run everything that is pending, then let me look" — without worker
threads, sleeps or timing. :func:`run_until_idle` does exactly that through
:func:`chanlite.worker.dispatch`, so routing, deferred sends (flushed on
success, discarded on error), ``DenyConnection`` and ``ConsumeLater`` behave
as they do in a real worker; only the thread differs.

Consumers run with Django's ``close_old_connections`` disconnected (as the
Django test client does for requests): inside a test transaction it would
close the connection and end the transaction.
"""

from __future__ import annotations

import collections
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import DEFAULT_CHANNEL_LAYER
from ..delay.service import DelayService
from ..layers import get_channel_layer
from ..routing import Router, as_router
from ..signals import db_hygiene_disabled
from ..worker import run_consumer

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer

__all__ = ["run_until_idle", "run_message", "delay_service", "EndlessLoop",
           "MAX_MESSAGES"]

#: Default bound of :func:`run_until_idle`: far above any real test, low
#: enough that a consumer re-sending to itself fails in well under a second.
MAX_MESSAGES = 10_000


class EndlessLoop(AssertionError):
    """:func:`run_until_idle` ran ``max_messages`` and the layer is still busy.

    An AssertionError so that a test runner reports it as a test failure
    (the code under test loops), not as an error in the harness.
    """


def run_message(layer: BaseChannelLayer, router: Router, channel: str, content: dict,
                result: bool = False) -> Any:
    """Dispatch one message in this thread: True if a route matched, or with
    ``result=True`` ``(matched, what the consumer returned)``.

    The consumer's exception propagates, so the failing test shows it.
    """
    # reentrant: clients call run_until_idle inside consume, and tests nest them
    with db_hygiene_disabled():
        outcome = run_consumer(layer, router, channel, content)
    return outcome if result else outcome[0]


_delay_lock = threading.Lock()


def delay_service(layer: BaseChannelLayer) -> Any:
    """The test delay service of ``layer`` (one per layer, memory store).

    :func:`run_until_idle` steps it, so ``asgi.delay`` requests are
    scheduled on the layer's (fake) clock and sent once due; tests can look
    at ``delay_service(layer).pending``.
    """
    # Kept on the layer itself (not in a registry keyed by layer, whose values
    # would keep every test layer alive): it lives and dies with the layer.
    with _delay_lock:
        service = getattr(layer, "_chanlite_test_delay", None)
        if service is None:
            service = DelayService(layer)
            layer._chanlite_test_delay = service  # type: ignore[attr-defined]
        return service


def send_committed_bindings() -> None:
    """Deliver data-binding sends held by ``atomic()`` blocks the test has
    left (see :func:`chanlite.binding.base.send_pending_in_tests`); called
    before the testing helpers read messages."""
    base = sys.modules.get("chanlite.binding.base")
    if base is not None:
        base.send_pending_in_tests()


def run_until_idle(
    layer: BaseChannelLayer | None = None,
    routing: Any = None,
    *,
    alias: str | None = None,
    channels: Sequence[str] | None = None,
    max_messages: int = MAX_MESSAGES,
    delays: bool = True,
) -> int:
    """Deliver every pending message on the routed channels; return how many ran.

    Messages that consumers send while this runs are delivered too, until
    the routed channels are empty. ``layer`` defaults to the alias's layer
    (the test layer inside ``ChannelTestCase`` or the ``channel_layer``
    fixture); ``routing`` to the alias's routing; ``channels`` narrows the
    channels taken (default: every channel the routing names). Messages with
    no matching route are dropped with a warning, as a worker would.

    The order is reproducible: the layer rotates fairly over the channels
    with a per-layer counter, not at random, so two runs of the same test
    deliver in the same order.

    With ``delays`` (the default) it also plays the delay service
    (``rundelay``): ``asgi.delay`` requests are scheduled on the layer's
    clock and, whenever the routed channels are empty, the messages that
    are due by then are sent and run too. So ``clock.advance(5)`` then
    ``run_until_idle()`` runs what became due; nothing sleeps.

    Raises :class:`EndlessLoop` after ``max_messages`` deliveries, naming the
    busiest channels, instead of hanging the test run.
    """
    if alias is None:
        alias = (layer.alias if layer is not None else None) or DEFAULT_CHANNEL_LAYER
    if layer is None:
        layer = get_channel_layer(alias)
    router = as_router(routing, alias)
    send_committed_bindings()
    names = sorted(channels if channels is not None else router.channels)
    delayed = delay_service(layer) if delays else None
    if not names:
        if delayed is not None:
            delayed.step()  # due messages still go out, to whoever reads them
        return 0
    if type(max_messages) is not int or max_messages < 1:
        raise ValueError(f"max_messages must be a positive int, not {max_messages!r}")
    recent: collections.deque[str] = collections.deque(maxlen=200)
    ran = 0
    while True:
        channel, content = layer.receive(names, block=False)
        if channel is None:
            if delayed is not None and delayed.step():
                continue  # delayed messages went out: run their consumers too
            return ran
        if ran >= max_messages:
            busiest = collections.Counter(recent).most_common(3)
            raise EndlessLoop(
                f"run_until_idle ran {ran} messages and the layer is still not idle; a "
                f"consumer probably keeps sending to itself. Busiest channels of the last "
                f"{len(recent)}: {', '.join(f'{n!r} x{c}' for n, c in busiest)}. Raise "
                "max_messages if this much work is expected"
            )
        recent.append(channel)
        ran += 1
        run_message(layer, router, channel, content)
