"""The delay service: take ``asgi.delay`` requests, send their content when due.

One object, three ways to drive it:

* :meth:`DelayService.run` — a loop for ``manage.py rundelay`` and the
  embedded thread: a *blocking* receive on ``asgi.delay`` whose timeout is
  the time until the next message is due. Nothing polls: an idle service
  sleeps in the layer until a request arrives or a message falls due, and
  the store (database) is read once, at start-up.
* :meth:`DelayService.step` — "take every waiting request, send what is
  due", non-blocking; ``run_until_idle`` calls it so tests drive delays with
  a fake clock (``clock.advance(5)`` then ``run_until_idle()``).
* :meth:`accept` / :meth:`deliver_due` — the two halves, for tests.

Time is the layer's clock (``layer.clock``): wall-clock seconds for the IPC
and Redis layers, a :class:`~chanlite.testing.FakeClock` in tests.

Due time = when the request was *sent* + ``delay``. The send time is read
from the layer (``messages_max_age`` of the oldest queued request, which is
the next one received), so a request that waited in ``asgi.delay`` — while
the service was down, or in a test until ``run_until_idle`` ran — is not
delayed a second time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from typing import TYPE_CHECKING, Any

from .request import DELAY_CHANNEL, InvalidDelayRequest, parse_request
from .store import Entry, MemoryStore

if TYPE_CHECKING:  # pragma: no cover
    from ..layers.base import BaseChannelLayer

__all__ = ["DelayService"]

logger = logging.getLogger("chanlite.delay")

#: Clock slack when comparing due times (float rounding of send time + delay).
_EPSILON = 1e-6


class DelayService:
    """Schedules ``asgi.delay`` requests of one layer and sends them when due.

    ``store`` keeps accepted requests across a restart
    (:class:`~chanlite.delay.store.DatabaseStore`); the default
    :class:`~chanlite.delay.store.MemoryStore` keeps nothing. One thread
    drives a service at a time (``run`` *or* ``step``); ``stop`` may be
    called from any thread.
    """

    #: Longest blocking receive (seconds): a safety net only; ``stop()`` and
    #: new requests wake the receive at once.
    receive_timeout: float = 5.0
    #: Seconds before a message refused with ChannelFull is tried again
    #: (Channels 1.x's ``requeue_delay`` was 1 s too).
    retry_delay: float = 1.0
    #: Seconds to wait after the layer or the store failed before trying again.
    error_backoff: float = 1.0
    #: Most requests taken, or messages sent, in one batch, so a flood of
    #: requests cannot hold up messages that are due (and vice versa).
    batch: int = 1000

    def __init__(self, channel_layer: BaseChannelLayer, store: Any = None) -> None:
        self.layer = channel_layer
        self.store = store if store is not None else MemoryStore()
        self.clock = channel_layer.clock
        self._heap: list[tuple[float, int, Entry]] = []
        self._order = itertools.count()
        self._loaded = False
        self._stopping = threading.Event()
        self._wake: str | None = None
        #: Counters since start: requests accepted / refused, messages sent.
        self.accepted = 0
        self.refused = 0
        self.sent = 0

    # ---------------------------------------------------------------- schedule

    @property
    def pending(self) -> int:
        """Messages scheduled and not yet sent."""
        return len(self._heap)

    def next_due(self) -> float | None:
        """Due time (layer clock) of the earliest scheduled message, or None."""
        return self._heap[0][0] if self._heap else None

    def _schedule(self, entry: Entry) -> None:
        heapq.heappush(self._heap, (entry.due, next(self._order), entry))

    def load(self) -> int:
        """Schedule what the store kept from a previous run (once); return how many."""
        if self._loaded:
            return 0
        entries = self.store.load()
        for entry in entries:
            self._schedule(entry)
        self._loaded = True
        if entries:
            overdue = sum(1 for e in entries if e.due <= self.clock())
            logger.info("delay: %d delayed message(s) kept from before, %d already due",
                        len(entries), overdue)
        return len(entries)

    # ---------------------------------------------------------------- requests

    def accept(self, request: Any, age: float = 0.0) -> bool:
        """Validate and schedule one request; ``age`` = seconds since it was sent.

        Invalid requests are logged and dropped (False), never raised: a bad
        sender must not stop the service for everyone else.
        """
        try:
            parsed = parse_request(request)
            data = self.layer.encode(parsed.content)
        except (InvalidDelayRequest, TypeError, ValueError) as exc:
            self.refused += 1
            logger.warning("delay: dropped an invalid asgi.delay request: %s (request: %.200r)",
                           exc, request)
            return False
        due = self.clock() - age + parsed.delay_ms / 1000.0
        try:
            key = self.store.add(due, parsed.channel, data)
        except Exception:
            self.refused += 1
            logger.exception("delay: could not store a delayed message for %r; it is lost",
                             parsed.channel)
            return False
        self._schedule(Entry(due, key, parsed.channel, data))
        self.accepted += 1
        return True

    def take_requests(self, limit: int | None = None) -> int:
        """Accept the requests waiting in ``asgi.delay`` (non-blocking); return
        how many were taken (valid or not)."""
        limit = self.batch if limit is None else limit
        layer = self.layer
        taken = 0
        while taken < limit:
            stats = layer.channel_statistics(DELAY_CHANNEL)
            if not stats["messages_pending"]:
                break
            channel, content = layer.receive([DELAY_CHANNEL], block=False)
            if channel is None:
                break
            taken += 1
            self.accept(content, age=stats["messages_max_age"])
        return taken

    # ---------------------------------------------------------------- delivery

    def deliver_due(self, limit: int | None = None) -> int:
        """Send every message whose time has come, earliest first; return how many.

        Each is removed from the store *before* it is sent, so a crash in
        between loses it rather than sending it twice. A full channel gets
        the message again after ``retry_delay``; it is not dropped.
        """
        limit = self.batch if limit is None else limit
        heap = self._heap
        now = self.clock()
        sent = 0
        while heap and heap[0][0] <= now + _EPSILON and sent < limit:
            entry = heapq.heappop(heap)[2]
            try:
                claimed = self.store.claim(entry.key)
            except Exception:
                logger.exception("delay: could not remove a due message from the store; "
                                 "trying again in %ss", self.error_backoff)
                self._schedule(entry._replace(due=now + self.error_backoff))
                break
            if not claimed:
                logger.debug("delay: message %s was already sent by another delay process",
                             entry.key)
                continue
            try:
                self.layer.send(entry.channel, self.layer.decode(entry.data))
            except self.layer.ChannelFull:
                logger.warning("delay: channel %r is full; sending its delayed message again "
                               "in %ss", entry.channel, self.retry_delay)
                self._reschedule(entry, now + self.retry_delay)
            except Exception:
                logger.exception("delay: could not send a delayed message to %r; trying "
                                 "again in %ss", entry.channel, self.error_backoff)
                self._reschedule(entry, now + self.error_backoff)
                break
            else:
                sent += 1
        self.sent += sent
        return sent

    def _reschedule(self, entry: Entry, due: float) -> None:
        """Put an unsent, already claimed message back (store and schedule)."""
        try:
            key = self.store.add(due, entry.channel, entry.data)
        except Exception:
            logger.exception("delay: could not store a delayed message for %r again; it is lost",
                             entry.channel)
            return
        self._schedule(entry._replace(due=due, key=key))

    def step(self) -> int:
        """Take the waiting requests, then send what is due; return how many
        messages were sent. Non-blocking: what tests call (``run_until_idle``)."""
        self.load()
        self.take_requests()
        return self.deliver_due()

    # ---------------------------------------------------------------- loop

    def _timeout(self) -> float:
        due = self.next_due()
        if due is None:
            return self.receive_timeout
        return min(self.receive_timeout, max(0.0, due - self.clock()))

    def run(self) -> None:
        """Serve until :meth:`stop`: block on ``asgi.delay`` until a request
        arrives or the next message is due."""
        self._wake = self.layer.new_channel("chanlite.delay.wake?")
        listen = [DELAY_CHANNEL, self._wake]
        self.load()
        # debug: the commands print one banner (rundelay its own line; the
        # servers one "listening" line for everything they run)
        logger.debug("delay: listening on %s (%d message(s) scheduled, store %r)",
                     DELAY_CHANNEL, self.pending, self.store)
        while not self._stopping.is_set():
            try:
                self.deliver_due()
                if self.take_requests() or self.deliver_due():
                    continue  # more may be waiting: look again before blocking
                channel, content = self.layer.receive(listen, block=True,
                                                      timeout=self._timeout())
            except Exception:
                logger.exception("delay: the channel layer failed; retrying in %ss",
                                 self.error_backoff)
                self._stopping.wait(self.error_backoff)
                continue
            if channel == DELAY_CHANNEL:
                self.accept(content)  # just arrived: age ~0
        logger.info("delay: stopped (%d message(s) still scheduled%s)", self.pending,
                    ", kept in the store" if self.store.durable else ", dropped")

    def stop(self) -> None:
        """Make :meth:`run` return soon (from any thread)."""
        self._stopping.set()
        if self._wake is not None:
            try:
                self.layer.send(self._wake, {"wake": True})
            except Exception:  # the receive timeout notices the flag anyway
                logger.debug("delay: could not send the wake-up", exc_info=True)

    def __repr__(self) -> str:
        return f"<DelayService {self.pending} scheduled, store={self.store!r}>"
