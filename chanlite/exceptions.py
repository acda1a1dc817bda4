"""Exceptions a consumer may raise to steer the worker (as in Channels 1.x)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DenyConnection",
    "ConsumeLater",
    "SendNotAvailableOnDemultiplexer",
    "ResponseLater",
    "RequestAborted",
    "RequestTimeout",
    "ChannelSocketException",
    "WebsocketCloseException",
]


class DenyConnection(Exception):
    """Raise from a ``websocket.connect`` consumer to refuse the handshake.

    The worker discards the consumer's deferred sends and replies
    ``{"close": True}``, which the server turns into an HTTP 403.
    """


class ConsumeLater(Exception):
    """Raise to put the message back on its channel and handle it later.

    The worker requeues it (immediately) with a ``__retries__`` count and
    drops it, with a warning, after ``message_retries`` attempts (a
    ``Worker`` argument, 10 by default).
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


class ChannelSocketException(Exception):
    """Base for exceptions that answer the client themselves.

    When a consumer raises one, the worker calls :meth:`run` with the message
    instead of logging an error (as Channels 1.x did). The consumer's own
    deferred sends are discarded first (it failed); what ``run`` sends goes
    out at once.
    """

    def run(self, message: Any) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement run(message) to reply to the client"
        )


class WebsocketCloseException(ChannelSocketException):
    """Raise from a WebSocket consumer to close the socket (``code``: 1000 or
    3000-4999; default a plain close)."""

    def __init__(self, code: int | None = None) -> None:
        if code is not None and not (
            type(code) is int and (code == 1000 or 3000 <= code <= 4999)
        ):
            raise ValueError(f"invalid close code {code!r}: use 1000 or one in 3000-4999")
        super().__init__(code)
        self._code = code

    def run(self, message: Any) -> None:
        if not message.channel.name or not message.channel.name.startswith("websocket."):
            raise ValueError(
                f"WebsocketCloseException raised by a consumer of {message.channel.name!r}; "
                "it only means something for websocket.* messages"
            )
        if message.reply_channel is None:
            raise ValueError("WebsocketCloseException: the message has no reply_channel")
        message.reply_channel.send({"close": self._code or True}, immediately=True)
