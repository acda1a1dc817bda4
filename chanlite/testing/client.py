"""``Client``: play the interface server's part against consumers, in-thread.

A client owns a reply channel, sends messages carrying it, runs the routed
consumer for a message (``consume``) and reads what the consumers sent back
(``receive``) — the whole life cycle of a message without a server, worker
threads or sleeps. Names and behaviour follow Channels 1.x's
``channels.test.Client``; differences:

* the reply channel is process-specific (``test.reply.<n>!c<n>``) like a real
  server's, and each client has its own prefix, so two clients in one test
  never read each other's replies;
* consumers run through :func:`chanlite.worker.dispatch`: deferred sends,
  ``DenyConnection`` and ``ConsumeLater`` behave as in a worker, and a
  consumer's exception reaches the test.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from typing import TYPE_CHECKING, Any

from .. import DEFAULT_CHANNEL_LAYER
from ..layers import get_channel_layer
from ..layers.names import queue_for_send
from ..message import Message
from ..routing import as_router
from .idle import run_message, run_until_idle, send_committed_bindings

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer
    from ..message import Message
    from ..routing import Router

__all__ = ["Client", "next_message"]

_ids = itertools.count(1)


def next_message(layer: BaseChannelLayer, channel: str) -> Message | None:
    """The next message on ``channel`` (a Message), or None if there is none.

    A process-specific name ``"a!x"`` is read through its prefix ``"a!"``
    (the layer API's rule), so it returns the next message of *any*
    ``a!...`` channel.
    """
    send_committed_bindings()
    name = channel.split("!", 1)[0] + "!" if "!" in channel else channel
    got, content = layer.receive([name], block=False)
    if got is None:
        return None
    return Message(content, got, layer)


class Client:
    """A fake interface-server connection for one alias (default ``"default"``).

    ``channel_layer`` and ``routing`` pin a layer / routing; by default the
    alias's current ones are looked up on every call, so a client made in
    ``setUp`` follows ``ChannelTestCase`` layer swaps and ``apply_routes``.
    """

    def __init__(
        self,
        alias: str = DEFAULT_CHANNEL_LAYER,
        channel_layer: BaseChannelLayer | None = None,
        routing: Any = None,
        reply_channel: str | None = None,
    ) -> None:
        self.alias = alias
        self._layer = channel_layer
        self._routing = routing
        number = next(_ids)
        if reply_channel is None:
            self.reply_prefix = f"test.reply.{number}!"
            self.reply_channel = f"{self.reply_prefix}c{number}"
        else:
            # A name of the test's choosing (1.x tests used e.g.
            # "daphne.response.1"); a process-specific one ("x!y") is read
            # through its queue, the prefix "x!" (so replies to another
            # "x!..." channel arrive here too: pick a prefix of your own).
            self.reply_channel = reply_channel
            self.reply_prefix = queue_for_send(reply_channel)
        self._inbox: deque[dict] = deque()
        #: The Message the last ``consume`` ran.
        self.last_message: Message | None = None

    # ---------------------------------------------------------------- wiring

    @property
    def channel_layer(self) -> BaseChannelLayer:
        """The layer messages go through (looked up per call unless pinned)."""
        if self._layer is not None:
            return self._layer

        return get_channel_layer(self.alias)

    @property
    def router(self) -> Router:
        """The routing consumers are found in (per call, so ``apply_routes`` applies)."""
        return as_router(self._routing, self.alias)

    # ----------------------------------------------------------------- the API

    def get_next_message(self, channel: str) -> Message | None:
        """The next message on ``channel`` as a Message, or None."""
        if channel == self.reply_channel and self._inbox:
            return Message(self._inbox.popleft(), channel, self.channel_layer)
        return next_message(self.channel_layer, channel)

    def send(self, to: str, content: dict | None = None) -> None:
        """Send ``content`` (copied) to channel ``to`` with this client's
        ``reply_channel`` added unless it has one."""
        content = copy.deepcopy(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        self.channel_layer.send(to, content)

    def consume(self, channel: str, fail_on_none: bool = True) -> Any:
        """Take the next message on ``channel`` and run its consumer here.

        Returns what the consumer returned — the consumer instance for a
        class consumer, usually None for a function — as 1.x did; the
        Message itself is :attr:`last_message`. Raises AssertionError when
        there is no message or no route for it (with ``fail_on_none=False``
        it returns None instead); the consumer's own exception propagates.
        """
        layer = self.channel_layer
        message = next_message(layer, channel)
        if message is None:
            if fail_on_none:
                raise AssertionError(f"no message on channel {channel!r} to consume")
            return None
        router = self.router
        if router.match(message.channel.name, message.content) is None:
            if fail_on_none:
                raise AssertionError(
                    f"no route matches the message on {message.channel.name!r} "
                    f"({_describe(message.content)}); routing channels: "
                    f"{sorted(router.channels)}. Apply routes with apply_routes([...])"
                )
            return None
        self.last_message = message
        return run_message(layer, router, message.channel.name, message.content, result=True)[1]

    def send_and_consume(self, channel: str, content: dict | None = None,
                         fail_on_none: bool = True) -> Any:
        """``send`` then ``consume`` on the same channel: one message's full
        cycle; returns what the consumer returned."""
        self.send(channel, content)
        return self.consume(channel, fail_on_none=fail_on_none)

    def get_consumer_by_channel(self, channel: str) -> Any:
        """The consumer the routing picks for a bare message on ``channel``
        (1.x helper; filters on fields the message lacks do not match)."""
        matched = self.router.match(channel, {"text": ""})
        return matched[0] if matched else None

    def receive(self) -> dict | None:
        """The content of the next message sent to this client's reply channel."""
        if self._inbox:
            return self._inbox.popleft()
        send_committed_bindings()
        channel, content = self.channel_layer.receive([self.reply_prefix], block=False)
        return content if channel is not None else None

    def receive_all(self) -> list[dict]:
        """Every message waiting on the reply channel, oldest first."""
        out = []
        while (content := Client.receive(self)) is not None:
            out.append(content)
        return out

    def unreceive(self, content: dict) -> None:
        """Put ``content`` back at the front of this client's replies."""
        self._inbox.appendleft(content)

    def join_group(self, group_name: str) -> None:
        """Add this client's reply channel to group ``group_name``."""
        self.channel_layer.group_add(group_name, self.reply_channel)

    def run_until_idle(self, **options: Any) -> int:
        """:func:`~chanlite.testing.run_until_idle` on this client's layer and routing."""
        return run_until_idle(self.channel_layer, self._routing, alias=self.alias, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.reply_channel} alias={self.alias!r}>"


def _describe(content: dict) -> str:
    keys = ", ".join(sorted(content))
    path = f"path {content['path']!r}, " if "path" in content else ""
    return f"{path}keys {keys}"
