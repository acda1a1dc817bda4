"""``enforce_ordering``: run a connection's messages in their ``order``.

Several workers may take ``websocket.receive`` messages of one connection at
the same time, so without help frame 3 can be handled before frame 2. With
``@enforce_ordering`` a message whose ``order`` is not the next one for its
connection *waits* in a per-connection wait channel; when the message before
it has run, the waiting one is put back on its original channel to be
handled. ``slight=True`` only ensures ``websocket.connect`` (order 0) runs
before anything else of the connection.

The next expected order is kept in the channel session. Fixes over
Channels 1.x (docs/migrating.md):

* the wait channel name is derived from a hash of the reply channel (1.x
  used ``"__wait__." + reply_channel``, which contains ``!`` and is not a
  receivable channel name);
* the order advances even when the consumer raises (1.x stalled the
  connection forever after one failing message);
* only the message that became runnable is requeued, once (1.x requeued
  every waiting message on every step, and they bounced between workers);
* a message parked just as the previous one finished is not stranded: after
  parking, the session is re-read and the message released if it is due
  (1.x could lose that race and stall);
* the requeue is sent after the consumer's own replies (as a deferred send),
  so replies leave in order.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.utils.crypto import salted_hmac

from .channel import Channel
from .message import Message
from .sessions import channel_session, find_message, session_for_reply_channel

__all__ = ["enforce_ordering", "ORDER_KEY"]

logger = logging.getLogger("chanlite.ordering")

#: Channel-session key holding the next ``order`` this connection may run.
ORDER_KEY = "__chanlite_next_order"
#: Key added to a parked message to remember the channel it came from.
_ORIGIN_KEY = "__chanlite_channel"
_STATE = "_chanlite_ordering"

F = TypeVar("F", bound=Callable[..., Any])


def _runnable(order: int, next_order: int, slight: bool) -> bool:
    if slight:
        return order == 0 or next_order > 0
    return order == next_order


def wait_channel_for(reply_channel: str) -> str:
    """The wait channel of a connection (a valid, receivable channel name).

    A keyed hash of the reply channel, with a salt of its own: a wait
    channel's name (visible to anything that lists the layer's channels)
    reveals neither the reply channel nor its channel session key.
    """
    digest = salted_hmac("chanlite.ordering.wait_channel", reply_channel,
                         algorithm="sha256").hexdigest()
    return "__chanlite.wait." + digest[:40]


def enforce_ordering(func: F | None = None, *, slight: bool = False) -> Any:
    """Decorate a consumer so a connection's messages run in ``order``.

    Use bare (``@enforce_ordering``) or as ``@enforce_ordering(slight=True)``.
    Messages must carry ``order`` and ``reply_channel`` (WebSocket messages do).
    """
    if func is None:
        return lambda f: enforce_ordering(f, slight=slight)

    @channel_session
    @functools.wraps(func)
    def gate(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "enforce_ordering")
        if "order" not in message.content:
            raise ValueError(
                f"@enforce_ordering on {func.__qualname__}: messages on "
                f"{message.channel.name!r} have no 'order' field; only use it for websocket.*"
            )
        order = int(message["order"])
        session = message.channel_session
        next_order = int(session.get(ORDER_KEY, 0))
        if not _runnable(order, next_order, slight):
            if order < next_order:
                logger.warning(
                    "dropping a message on %r with order %d: this connection already ran "
                    "up to order %d", message.channel.name, order, next_order - 1,
                )
                return None
            message.__dict__[_STATE] = "wait"
            return None
        # Advance (and save) before running: the next message may start on
        # another worker as soon as it is released, and a consumer that raises
        # must not stall the connection.
        session[ORDER_KEY] = max(next_order, order + 1)
        session.save()
        session.modified = False
        message.__dict__[_STATE] = "ran"
        return func(*args, **kwargs)

    @functools.wraps(func)
    def outer(*args: Any, **kwargs: Any) -> Any:
        message = find_message(args, "enforce_ordering")
        succeeded = False
        try:
            result = gate(*args, **kwargs)
            succeeded = True
            return result
        finally:
            state = message.__dict__.pop(_STATE, None)
            if state == "ran":
                _release(message, slight, immediately=not succeeded)
            elif state == "wait":
                _park(message, slight)

    return outer


def _park(message: Message, slight: bool) -> None:
    layer = message.channel_layer
    reply = message.reply_channel.name
    wait = wait_channel_for(reply)
    try:
        layer.send(wait, {**message.content, _ORIGIN_KEY: message.channel.name})
    except layer.ChannelFull:
        logger.error(
            "dropping an out-of-order message of %s: its wait channel is full (%d messages "
            "ahead of a missing one); raise the layer capacity", reply, layer.capacity_for(wait),
        )
        return
    # The message before this one may have finished between our session read
    # and the park above; if so nobody else will release us: look again.
    next_order = int(session_for_reply_channel(reply).get(ORDER_KEY, 0))
    if _runnable(int(message["order"]), next_order, slight):
        # A deferred requeue, as after a consumer ran: a full channel gets the
        # bounded retry and a logged drop of any deferred send (the consumer
        # did not run, so the buffer holds nothing else to go before it).
        _release(message, slight, immediately=False, next_order=next_order)


def _release(
    message: Message, slight: bool, immediately: bool, next_order: int | None = None
) -> None:
    """Requeue the parked message(s) that may now run; park the rest again."""
    layer = message.channel_layer
    wait = wait_channel_for(message.reply_channel.name)
    if next_order is None:
        next_order = int(message.channel_session.get(ORDER_KEY, 0))
    parked: list[dict] = []
    while True:
        channel, content = layer.receive([wait], block=False)
        if channel is None:
            break
        parked.append(content)
    if not parked:
        return
    parked.sort(key=lambda c: int(c.get("order", 0)))
    ready = [c for c in parked if _runnable(int(c.get("order", 0)), next_order, slight)]
    if not slight:
        ready = ready[:1]  # strict: only the very next one; it releases its successor
    for content in parked:
        if any(content is r for r in ready):
            origin = content.pop(_ORIGIN_KEY, None) or "websocket.receive"
            try:
                Channel(origin, channel_layer=layer).send(content, immediately=immediately)
            except layer.ChannelFull:
                # Only an immediate send raises (the consumer raised, so its
                # deferred sends are discarded; or no worker buffers sends).
                # Log it and go on: the rest of
                # ``parked`` must still go back to the wait channel, and the
                # consumer's own exception must reach the worker, not this one.
                logger.error(
                    "dropped a parked message of %s (order %s): channel %r is full",
                    message.reply_channel, content.get("order"), origin,
                )
        elif not slight and int(content.get("order", 0)) < next_order:
            # A second copy of a frame that already ran: it can never be
            # the next one again, so parking it again would keep it (and the
            # wait channel's capacity) for good.
            logger.warning(
                "dropped a duplicate frame of %s: order %s already ran (next is %s)",
                message.reply_channel, content.get("order"), next_order,
            )
        else:
            try:
                layer.send(wait, content)
            except layer.ChannelFull:
                logger.error(
                    "dropped a parked message of %s: wait channel full", message.reply_channel
                )
