"""Back-pressure from the channel layer to the socket: wait, do not drop.

When a channel the server sends client traffic to (``websocket.receive``,
``websocket.connect``, ``http.request``, a request body channel …) is full,
the connection's message is kept, the connection stops being read (so TCP
pushes back on the client) and the send is retried when the layer has room.
Only when the channel has stayed full for ``backpressure_timeout`` seconds
does the connection give up (the session answers 1013 or 503).

Two objects, both living on the I/O loop:

* :class:`Outbox` - one connection's messages to the layer, sent strictly in
  order: once one waits, later ones queue behind it (whatever their
  channel), so ``websocket.disconnect`` never overtakes the receives before
  it and ``order`` numbers are given at the moment a message is really sent.
* :class:`LayerSender` - the server's waiting lists, one FIFO of outboxes per
  full channel. A retry tries the head outbox only: one failed ``send`` per
  full channel per retry, however many connections wait. Retries are woken
  by the layer's "space available" signal (:meth:`BaseChannelLayer.call_when_space`)
  - no polling at all on the in-memory layer - and, on layers whose signal
  cannot see other processes' receives (IPC, Redis), also by a bounded
  backoff timer (1 ms doubling to 50 ms, reset whenever a retry makes progress).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..interval_log import IntervalLog
from ..layers.base import BaseChannelLayer, ChannelFull

if TYPE_CHECKING:  # pragma: no cover
    from .loop import Loop, Timer

__all__ = ["Outbox", "LayerSender", "Owner"]

log = logging.getLogger("chanlite.server")

BACKOFF_MIN = 0.001
BACKOFF_MAX = 0.05
_RETRY_BATCH = 64  # outboxes served per retry before yielding to the loop

#: One queued send: (channel, message, numbered, on_sent).
_Item = tuple[str, dict[str, Any], bool, "Callable[[dict[str, Any]], None] | None"]


class Owner(Protocol):
    """What an outbox reports to (a session)."""

    conn: Any

    def layer_blocked(self) -> None: ...
    def layer_unblocked(self) -> None: ...
    def layer_timeout(self, channel: str, dropped: list[tuple[str, dict[str, Any]]]) -> None: ...
    def layer_send_failed(self, channel: str, message: dict[str, Any], exc: Exception) -> None: ...


class Outbox:
    """One connection's messages to the layer, delivered in order."""

    __slots__ = ("sender", "owner", "items", "blocked_since", "order")

    def __init__(self, sender: LayerSender, owner: Owner) -> None:
        self.sender = sender
        self.owner = owner
        # An empty tuple until the first message waits: an idle connection
        # then holds no deque (a deque is ~600 bytes, and a server holds tens
        # of thousands of these).
        self.items: deque[_Item] | tuple[()] = ()
        self.blocked_since = 0.0
        #: numbered messages sent so far (``order`` of the next one is this + 1)
        self.order = 0

    @property
    def blocked(self) -> bool:
        """Messages are waiting for room: later ones queue behind them."""
        return bool(self.items)

    def send(self, channel: str, message: dict[str, Any], numbered: bool = False,
             on_sent: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Send now (True), or keep it in order behind a full channel (False).

        ``numbered`` messages get ``order`` = previous numbered + 1 when really
        sent. ``on_sent(message)`` runs once it is on the layer. Errors other
        than ``ChannelFull`` (``MessageTooLarge``, a failing layer) propagate
        when the send is immediate, and go to ``owner.layer_send_failed``
        when it was deferred.
        """
        item = (channel, message, numbered, on_sent)
        if self.items:
            self.items.append(item)
            return False
        if self._try(item):
            return True
        self.items = deque((item,))
        self.sender.wait(self, channel)
        self.owner.layer_blocked()
        return False

    def _try(self, item: _Item) -> bool:
        channel, message, numbered, on_sent = item
        if numbered:
            message["order"] = self.order + 1
        try:
            self.sender.layer.send(channel, message)
        except ChannelFull:
            return False
        if numbered:
            self.order += 1
        if on_sent is not None:
            on_sent(message)
        return True

    def drain(self) -> str | None:
        """Send queued messages in order; the channel still full, or None."""
        items = self.items
        while items:
            item = items[0]
            try:
                sent = self._try(item)
            except Exception as exc:
                items.popleft()
                self.owner.layer_send_failed(item[0], item[1], exc)
                continue
            if not sent:
                return item[0]
            items.popleft()
        return None

    def discard(self) -> list[tuple[str, dict[str, Any]]]:
        """Forget every queued message; return them (channel, message)."""
        dropped = [(channel, message) for channel, message, _, _ in self.items]
        self.items = ()
        return dropped


class LayerSender:
    """The server's outboxes waiting for room, one FIFO per full channel."""

    def __init__(self, layer: BaseChannelLayer, loop: Loop, timeout: float,
                 log_interval: float = 10.0) -> None:
        self.layer = layer
        self.loop = loop
        self.timeout = timeout
        # True: every receive signals (in-memory layer), so no timer but the deadline.
        self._complete = layer.space_signal_complete
        self._waiting: dict[str, deque[Outbox]] = {}
        self._armed: dict[str, Callable[[], None]] = {}  # channel -> its registered callback
        self._timers: dict[str, Timer] = {}
        self._backoff: dict[str, float] = {}
        self._flush_timer: Timer | None = None
        self.closed_count = IntervalLog(
            log, logging.WARNING,
            "back-pressure: gave up on %d connection(s)%s whose channel stayed full "
            "for the whole backpressure_timeout (WebSocket closed 1013, handshake or HTTP "
            "request answered 503; consumers are not keeping up: add workers or raise the "
            "channel's capacity); last: %s", interval=log_interval)
        self.paused_count = IntervalLog(
            log, logging.INFO,
            "back-pressure: paused reading %d time(s)%s because a channel was full "
            "(the connections resume when consumers catch up); last: %s",
            interval=log_interval)
        self.retries = 0  # send attempts made by retries (measured in tests/benchmarks)

    def outbox(self, owner: Owner) -> Outbox:
        return Outbox(self, owner)

    @property
    def waiting(self) -> int:
        """Outboxes waiting for room, over all channels."""
        return sum(len(q) for q in self._waiting.values())

    # ------------------------------------------------------------ waiting

    def wait(self, box: Outbox, channel: str) -> None:
        """``box`` cannot send its head message to ``channel``: queue it."""
        box.blocked_since = time.monotonic()
        queue = self._waiting.get(channel)
        if queue is None:
            queue = self._waiting[channel] = deque()
        queue.append(box)
        self._note(self.paused_count, channel, box)
        if len(queue) == 1:
            # Arm the signal, then retry once: a message taken between the
            # failed send and the registration would otherwise be missed.
            self._arm(channel)
            self._backoff[channel] = BACKOFF_MIN
            self.loop.call_soon(self._retry, channel)

    def _arm(self, channel: str) -> None:
        if channel in self._armed:
            return
        loop = self.loop

        def space(channel: str = channel) -> None:  # runs on the receiving thread
            loop.call_soon_threadsafe(self._signalled, channel)

        self._armed[channel] = space
        self.layer.call_when_space(channel, space)

    def _signalled(self, channel: str) -> None:
        self._armed.pop(channel, None)
        self._retry(channel)

    def _retry(self, channel: str) -> None:
        queue = self._waiting.get(channel)
        if not queue:
            self._forget(channel)
            return
        served = 0
        progressed = False
        retried_after_arming = False
        while queue:
            if served >= _RETRY_BATCH:
                self.loop.call_soon(self._retry, channel)  # let the loop breathe
                break
            box = queue[0]
            if not box.items or box.items[0][0] != channel:
                queue.popleft()  # emptied or moved on meanwhile (e.g. discarded)
                continue
            self.retries += 1
            blocked_on = self._drain(box)
            if blocked_on == channel:
                if channel not in self._armed and not retried_after_arming:
                    self._arm(channel)
                    retried_after_arming = True
                    continue
                break
            queue.popleft()
            served += 1
            progressed = True
            if blocked_on is None:
                box.owner.conn.guard(box.owner.layer_unblocked)
            else:
                self.wait(box, blocked_on)
        if progressed:
            self._backoff[channel] = BACKOFF_MIN
        if not queue:
            self._forget(channel)
        else:
            self._schedule(channel, progressed)

    def _drain(self, box: Outbox) -> str | None:
        try:
            return box.drain()
        except Exception:  # an owner callback failed: that connection only
            log.exception("back-pressure: resuming connection %s failed", box.owner.conn.id)
            box.discard()
            box.owner.conn.abort()
            return None

    def _schedule(self, channel: str, progressed: bool) -> None:
        """One timer per waiting channel: backoff retry or the head's deadline."""
        queue = self._waiting[channel]
        now = time.monotonic()
        delay = queue[0].blocked_since + self.timeout - now
        if not self._complete:
            backoff = self._backoff.get(channel, BACKOFF_MIN)
            if not progressed:
                self._backoff[channel] = min(BACKOFF_MAX, backoff * 2)
            delay = min(delay, backoff)
        timer = self._timers.get(channel)
        when = now + max(0.0, delay)
        if timer is not None and not timer.cancelled and timer.when <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[channel] = self.loop.call_later(max(0.0, delay),
                                                     lambda: self._timer_fired(channel))

    def _timer_fired(self, channel: str) -> None:
        self._timers.pop(channel, None)
        self._retry(channel)
        queue = self._waiting.get(channel)
        if not queue:
            return
        now = time.monotonic()
        expired = False
        while queue and queue[0].blocked_since + self.timeout <= now:
            box = queue.popleft()
            if not box.items or box.items[0][0] != channel:
                continue  # emptied or moved on meanwhile
            expired = True
            dropped = box.discard()
            self._note(self.closed_count, channel, box)
            box.owner.conn.guard(box.owner.layer_timeout, channel, dropped)
        if not queue:
            self._forget(channel)
        elif expired or channel not in self._timers:
            self._schedule(channel, False)

    def _forget(self, channel: str) -> None:
        self._waiting.pop(channel, None)
        self._backoff.pop(channel, None)
        timer = self._timers.pop(channel, None)
        if timer is not None:
            timer.cancel()
        callback = self._armed.pop(channel, None)
        if callback is not None:  # nobody waits: do not leave it in the layer
            self.layer.discard_space_callback(channel, callback)

    # ------------------------------------------------------------ logging

    def _note(self, counter: IntervalLog, channel: str, box: Outbox) -> None:
        head = getattr(box.owner, "head", None)
        counter.note(1, f"{channel} for {head.path if head is not None else '?'}")
        if counter.pending and self._flush_timer is None:
            self._flush_timer = self.loop.call_later(counter.interval, self._flush_logs)

    def _flush_logs(self) -> None:
        self._flush_timer = None
        self.closed_count.flush()
        self.paused_count.flush()

    def close(self) -> int:
        """Server teardown: one last try for every waiting outbox; return how
        many messages could not be sent (logged)."""
        lost = 0
        for channel, queue in list(self._waiting.items()):
            for box in queue:
                try:
                    if box.drain() is not None:
                        lost += len(box.discard())
                except Exception:
                    lost += len(box.discard())
            self._forget(channel)
        if lost:
            log.warning("shutdown: %d message(s) for full channels could not be sent", lost)
        self._flush_logs()
        return lost
