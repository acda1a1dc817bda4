"""The ``asgi.delay`` request: its format (Channels 1.x's), validation and a builder.

A request is an ordinary message on the ``asgi.delay`` channel::

    {"channel": "chat.expire", "content": {"id": 7}, "delay": 5000}

meaning "send ``content`` to ``channel`` in 5000 milliseconds". This is the
ASGI 1.0 delay protocol that Channels 1.1's ``rundelay`` served, unchanged,
so 1.x code that sends such dicts runs as it is. :class:`DelayedMessage`
builds (and sends) the same dict with its checks applied at the caller's
line instead of in a log of the delay service.

:func:`parse_request` is the one place the rules live: the service uses it
to refuse bad requests (logged and dropped, never a crash), the builder to
refuse them early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import DEFAULT_CHANNEL_LAYER
from ..channel import Channel
from ..layers.names import queue_for_send

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer

__all__ = ["DELAY_CHANNEL", "MAX_DELAY_MS", "InvalidDelayRequest", "DelayRequest",
           "DelayedMessage", "parse_request"]

#: The channel the delay service listens on (the ASGI delay protocol's name).
DELAY_CHANNEL = "asgi.delay"

#: The longest delay accepted: 30 days, in milliseconds. Anything longer is
#: far more likely a unit mistake (seconds since the epoch, microseconds)
#: than a plan, and a store full of messages due in the year 2500 helps no one.
MAX_DELAY_MS = 30 * 24 * 3600 * 1000


class InvalidDelayRequest(ValueError):
    """An ``asgi.delay`` request that cannot be served; the message says why."""


@dataclass(frozen=True)
class DelayRequest:
    """A validated request: deliver ``content`` to ``channel`` after ``delay_ms``."""

    channel: str
    content: dict
    delay_ms: float


def parse_request(request: Any) -> DelayRequest:
    """Check an ``asgi.delay`` message and return what it asks for.

    Raises :class:`InvalidDelayRequest` naming the problem: a missing key,
    a ``channel`` that is not a sendable channel name, a ``content`` that is
    not a dict, or a ``delay`` that is not a finite number of milliseconds
    between 0 and :data:`MAX_DELAY_MS`. Other keys are ignored (1.x ignored
    them too). The content's own validity (types, size) is the layer's
    business and is checked when the service stores it.
    """
    if not isinstance(request, dict):
        raise InvalidDelayRequest(f"a delay request is a dict, not {type(request).__name__}")
    missing = [key for key in ("channel", "content", "delay") if key not in request]
    if missing:
        raise InvalidDelayRequest(
            f"missing key(s) {', '.join(map(repr, missing))}; a delay request is "
            "{'channel': name, 'content': {...}, 'delay': milliseconds}"
        )
    channel, content, delay = request["channel"], request["content"], request["delay"]
    try:
        queue_for_send(channel)
    except TypeError as exc:
        raise InvalidDelayRequest(f"'channel': {exc}") from None
    if not isinstance(content, dict):
        raise InvalidDelayRequest(
            f"'content' must be a dict (the message to deliver), not {type(content).__name__}"
        )
    if type(delay) not in (int, float) or not math.isfinite(delay):
        raise InvalidDelayRequest(
            f"'delay' must be a number of milliseconds (int), not {delay!r:.60}"
        )
    if delay < 0:
        raise InvalidDelayRequest(f"'delay' is negative ({delay!r} ms)")
    if delay > MAX_DELAY_MS:
        raise InvalidDelayRequest(
            f"'delay' is {delay!r} ms, above the 30-day limit ({MAX_DELAY_MS} ms); "
            "is it in milliseconds?"
        )
    return DelayRequest(channel, content, delay)


class DelayedMessage:
    """Build, check and send an ``asgi.delay`` request.

    ::

        DelayedMessage("chat.expire", {"id": 7}, delay=5000).send()
        # same as Channel("asgi.delay").send(
        #     {"channel": "chat.expire", "content": {"id": 7}, "delay": 5000})

    ``delay`` is in milliseconds, as in the protocol. Bad arguments raise
    :class:`InvalidDelayRequest` here, where the mistake is, rather than
    being logged and dropped by the delay service. (In Channels 1.x,
    ``DelayedMessage`` was the delay server's database model; chanlite's
    storage is :class:`chanlite.delay.models.StoredDelay`, internal.)
    """

    def __init__(self, channel: str, content: dict, delay: float) -> None:
        parsed = parse_request({"channel": channel, "content": content, "delay": delay})
        self.channel = parsed.channel
        self.content = parsed.content
        self.delay = parsed.delay_ms

    def as_message(self) -> dict:
        """The ``asgi.delay`` message: ``{"channel", "content", "delay"}``."""
        return {"channel": self.channel, "content": self.content, "delay": self.delay}

    def send(self, alias: str = DEFAULT_CHANNEL_LAYER,
             channel_layer: BaseChannelLayer | None = None, immediately: bool = False) -> None:
        """Send the request to ``asgi.delay`` like any ``Channel.send``: inside a
        consumer it leaves when the consumer returns (and not if it raises),
        unless ``immediately``."""
        Channel(DELAY_CHANNEL, alias=alias, channel_layer=channel_layer).send(
            self.as_message(), immediately=immediately)

    def __repr__(self) -> str:
        return f"<DelayedMessage to {self.channel!r} in {self.delay} ms>"
