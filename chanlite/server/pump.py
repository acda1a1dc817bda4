"""The reply pump: this process's reply channels -> the I/O loop.

Every connection's reply channel lives under one process-specific prefix
(``chanlite.response.<random>!``), so a single thread blocking in
``layer.receive([prefix], block=True)`` collects every reply for this
process, from embedded workers and ``runworker`` processes alike. It hands
messages to the loop in batches (one wake-up for a burst, which is what makes
group broadcasts cheap) and never touches a socket itself.

Back-pressure: at most ``max_batches`` batches are handed over and not yet
processed (the loop calls :meth:`ReplyPump.done` after each). Without the
bound a loop slower than the pump would move the layer's whole reply queue
into its own unbounded hand-over deque, and senders would never see the
queue's capacity (``ChannelFull``, skipped group members); with it, replies
wait in the layer, where capacity and expiry apply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..layers.base import BaseChannelLayer

__all__ = ["ReplyPump"]

log = logging.getLogger("chanlite.server")
_BATCH = 256


class ReplyPump:
    """A thread: ``receive([prefix])`` in a loop, delivering batches to ``deliver``."""

    def __init__(self, layer: BaseChannelLayer, prefix: str,
                 deliver: Callable[[list[tuple[str, dict[str, Any]]]], None],
                 wait: float = 1.0, max_batches: int = 16) -> None:
        self.layer = layer
        self.prefix = prefix
        self.deliver = deliver
        self.wait = wait  # bounds how long stop() waits for the blocked receive
        self._slots = threading.Semaphore(max_batches)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chanlite-reply-pump", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        self._stop.set()
        try:
            # Wake the blocked receive at once instead of waiting for its timeout.
            self.layer.send(self.prefix + "stop", {"stop": True})
        except Exception:  # full, or the layer is gone: the timeout still ends it
            pass
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def done(self) -> None:
        """One delivered batch has been processed (called by the consumer of
        :attr:`deliver`, from any thread): the pump may hand over another."""
        self._slots.release()

    def _run(self) -> None:
        receive = self.layer.receive
        channels = [self.prefix]
        stopping = self._stop.is_set
        acquire = self._slots.acquire
        while not stopping():
            if not acquire(timeout=self.wait):
                continue  # the loop is behind: leave replies in the layer
            try:
                channel, message = receive(channels, block=True, timeout=self.wait)
                if channel is None or message is None:  # (both None together)
                    self._slots.release()
                    continue
                batch = [(channel, message)]
                while len(batch) < _BATCH:
                    channel, message = receive(channels, block=False)
                    if channel is None or message is None:
                        break
                    batch.append((channel, message))
            except Exception:
                log.exception("reply pump: receive from %s failed; retrying", self.prefix)
                self._slots.release()
                self._stop.wait(0.5)
                continue
            try:
                self.deliver(batch)
            except Exception:  # pragma: no cover - deliver only queues a call
                log.exception("reply pump: delivering a batch failed")
                self._slots.release()
