"""Running several workers in one process, and stopping them gracefully.

* :class:`WorkerPool` runs N :class:`~chanlite.worker.Worker` threads sharing
  a layer and a router, with a graceful ``stop(timeout)``: stop taking
  messages, let running consumers finish.
* :class:`GracefulShutdown` turns SIGTERM/SIGINT into that drain for a
  process running a pool (``runworker``): first signal drains, second exits.

Both are also importable from :mod:`chanlite.worker`, where they used to live.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .routing import Router, as_router
from .worker import Worker

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import BaseChannelLayer

__all__ = ["WorkerPool", "GracefulShutdown"]

# The worker's logger: one name for everything a worker process logs.
logger = logging.getLogger("chanlite.worker")


class WorkerPool:
    """N :class:`Worker` threads sharing a layer and a router.

    ``start()`` returns at once; ``stop(timeout)`` stops all workers taking
    messages and waits up to ``timeout`` seconds for running consumers.
    """

    def __init__(
        self,
        channel_layer: BaseChannelLayer,
        router: Router,
        threads: int = 4,
        only_channels: Iterable[str] | None = None,
        exclude_channels: Iterable[str] | None = None,
    ) -> None:
        if type(threads) is not int or threads < 1:
            raise ValueError(f"threads must be a positive int, not {threads!r}")
        router = as_router(router)
        self.workers = [
            Worker(channel_layer, signal_handlers=False, only_channels=only_channels,
                   exclude_channels=exclude_channels, router=router)
            for _ in range(threads)
        ]
        self.channels = self.workers[0].channels
        self._threads: list[threading.Thread] = []
        self._started = False

    def start(self) -> None:
        """Start the worker threads (daemons) and return."""
        if self._started:
            raise RuntimeError("this WorkerPool was already started; make a new one")
        self._started = True
        for index, worker in enumerate(self.workers):
            thread = threading.Thread(
                target=worker.run, name=f"chanlite-worker-{index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    @property
    def running(self) -> bool:
        """True while any worker thread is alive and not told to stop."""
        return any(
            t.is_alive() and not w.stopping for t, w in zip(self._threads, self.workers)
        )

    @property
    def failure(self) -> str | None:
        """Why a worker stopped on its own (e.g. its IPC segment was removed)."""
        return next((w.failure for w in self.workers if w.failure), None)

    @property
    def busy(self) -> int:
        """How many workers are running a consumer right now."""
        return sum(w.busy.is_set() for w in self.workers)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking messages; wait up to ``timeout`` for running consumers.

        Returns True when every worker thread finished in time.
        """
        for worker in self.workers:
            worker.stop()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads to end (all of them within ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            logger.warning("workers still running a consumer after %ss: %s", timeout, alive)
        return not alive


class GracefulShutdown:
    """SIGTERM/SIGINT handling for a process running a :class:`WorkerPool`.

    The first signal only sets :attr:`requested` (a signal handler must not
    block); :meth:`wait` — on the main thread — then stops the pool and
    waits up to ``drain_timeout`` for in-flight consumers. A second signal
    during the drain gives up waiting (exit status 1).
    """

    def __init__(self, pool: WorkerPool, drain_timeout: float = 30.0) -> None:
        self.pool = pool
        self.drain_timeout = drain_timeout
        self.requested = threading.Event()

    def __call__(self, signum: int, frame: Any = None) -> None:
        if self.requested.is_set():
            logger.warning("second signal %s: exiting without waiting for consumers", signum)
            raise SystemExit(1)
        logger.info(
            "signal %s: finishing running consumers (up to %ss)", signum, self.drain_timeout
        )
        self.requested.set()

    def install(self) -> None:
        """Install this object as the SIGTERM and SIGINT handler (main thread only)."""
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    def wait(self, on_stopping: Callable[[int], None] | None = None) -> bool:
        """Block until a signal, then drain the pool; True if it drained in time.

        ``on_stopping(busy)`` is called once no worker takes new messages,
        with the number of consumers still running.
        """
        while not self.requested.wait(1.0):
            if not self.pool.running:  # every worker died: nothing to wait for
                break
        for worker in self.pool.workers:
            worker.stop()
        if on_stopping is not None:
            on_stopping(self.pool.busy)
        return self.pool.join(self.drain_timeout)
