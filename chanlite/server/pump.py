"""The reply pump: this process's reply channels -> the I/O loop.

Every connection's reply channel lives under one process-specific prefix
(``chanlite.response.<random>!``), so a single thread blocking in
``layer.receive([prefix], block=True)`` collects every reply for this
process, from embedded workers and ``runworker`` processes alike. It hands
messages to the loop in batches (one wake-up for a burst, which is what makes
group broadcasts cheap) and never touches a socket itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..layers.base import BaseChannelLayer

__all__ = ["ReplyPump"]

log = logging.getLogger("chanlite.server")
_BATCH = 256


class ReplyPump:
    """A thread: ``receive([prefix])`` in a loop, delivering batches to ``deliver``."""

    def __init__(self, layer: BaseChannelLayer, prefix: str,
                 deliver: Callable[[list[tuple[str, dict]]], None],
                 wait: float = 1.0) -> None:
        self.layer = layer
        self.prefix = prefix
        self.deliver = deliver
        self.wait = wait  # bounds how long stop() waits for the blocked receive
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

    def _run(self) -> None:
        receive = self.layer.receive
        channels = [self.prefix]
        stopping = self._stop.is_set
        while not stopping():
            try:
                channel, message = receive(channels, block=True, timeout=self.wait)
                if channel is None:
                    continue
                batch = [(channel, message)]
                while len(batch) < _BATCH:
                    channel, message = receive(channels, block=False)
                    if channel is None:
                        break
                    batch.append((channel, message))
            except Exception:
                log.exception("reply pump: receive from %s failed; retrying", self.prefix)
                self._stop.wait(0.5)
                continue
            self.deliver(batch)
