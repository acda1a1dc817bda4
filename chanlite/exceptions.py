"""Exceptions a consumer may raise to steer the worker (as in Channels 1.x)."""

from __future__ import annotations

__all__ = [
    "DenyConnection",
    "ConsumeLater",
    "SendNotAvailableOnDemultiplexer",
    "ResponseLater",
    "RequestAborted",
    "RequestTimeout",
]


class DenyConnection(Exception):
    """Raise from a ``websocket.connect`` consumer to refuse the handshake.

    The worker discards the consumer's deferred sends and replies
    ``{"close": True}``, which the server turns into an HTTP 403.
    """


class ConsumeLater(Exception):
    """Raise to put the message back on its channel and handle it later.

    The worker requeues it (immediately) with a ``__retries__`` count and
    drops it, with a warning, after ``Worker.message_retries`` attempts.
    """


class ResponseLater(Exception):
    """Raise from a Django view run by ``chanlite.handler`` to send no response now.

    The view has arranged for something else (a later consumer, a group
    send) to answer on ``request.reply_channel``; the handler sends nothing.
    """


class SendNotAvailableOnDemultiplexer(Exception):
    """A demultiplexer has no single stream to send on; use the multiplexer."""


class RequestAborted(Exception):
    """The HTTP client went away while its request body was being read."""


class RequestTimeout(RequestAborted):
    """The rest of an HTTP request body did not arrive in time."""
