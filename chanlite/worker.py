"""Workers: take messages off the routed channels and run their consumers.

Three pieces, usable separately:

* :func:`dispatch` runs *one* message through a router in the calling thread,
  with the full consumer lifecycle (signals, deferred sends flushed on
  success and discarded on error, ``DenyConnection``/``ConsumeLater``) and
  lets the consumer's exception propagate. The testing package and the
  embedded server use it directly.
* :class:`Worker` loops ``receive(block=True)`` over the routed channels and
  calls :func:`dispatch`, logging (not raising) a consumer's exception.
* :class:`WorkerPool` runs N workers on daemon threads with a graceful
  ``stop(timeout)``: stop taking messages, let running consumers finish
  (with :class:`GracefulShutdown`, it lives in :mod:`chanlite.worker_pool`
  and is importable from here too).

Blocking receive, not polling: each worker also listens on a private wake
channel, so ``stop()`` interrupts an idle ``receive`` at once; the receive
timeout is only a safety net for layers that cannot deliver the wake-up.
"""

from __future__ import annotations

import fnmatch
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .channel import deferred_sends
from .exceptions import ChannelSocketException, ConsumeLater, DenyConnection
from .message import Message
from .routing import Router, _name, as_router, get_router
from .signals import consumer_finished, consumer_started, worker_ready

if TYPE_CHECKING:  # pragma: no cover
    # worker_pool's two classes: re-exported for type checkers; at run time
    # __getattr__ (end of file) loads them.
    from .layers.base import BaseChannelLayer
    from .worker_pool import GracefulShutdown, WorkerPool  # noqa: F401

__all__ = ["dispatch", "run_consumer", "Worker", "WorkerPool", "filter_channels"]

logger = logging.getLogger("chanlite.worker")

#: How many times a message may be put back with ConsumeLater before it is dropped.
MESSAGE_RETRIES = 10


def filter_channels(
    channels: Iterable[str],
    only_channels: Iterable[str] | None = None,
    exclude_channels: Iterable[str] | None = None,
) -> list[str]:
    """Apply ``--only-channels`` / ``--exclude-channels`` globs, sorted."""
    names = sorted(set(channels))
    if only_channels:
        only = list(only_channels)
        names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in only)]
    if exclude_channels:
        excluded = list(exclude_channels)
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, g) for g in excluded)]
    return names


def dispatch(
    channel_layer: BaseChannelLayer,
    router: Router,
    channel: str,
    content: dict,
    *,
    message_retries: int = MESSAGE_RETRIES,
    callback: Callable[[str, Message], Any] | None = None,
) -> bool:
    """Run the consumer routed for ``(channel, content)`` in this thread.

    Returns False (and logs) when no route matches, True once a consumer
    ran. Sends made by the consumer are delivered when it returns and are
    discarded if it raises; the exception then propagates to the caller
    (a Worker logs it; a test sees it). ``callback(channel, message)`` is
    called once the route matched, just before the consumer (1.x's Worker
    ``callback``).
    """
    return run_consumer(
        channel_layer, router, channel, content,
        message_retries=message_retries, callback=callback,
    )[0]


def run_consumer(
    channel_layer: BaseChannelLayer,
    router: Router,
    channel: str,
    content: dict,
    *,
    message_retries: int = MESSAGE_RETRIES,
    callback: Callable[[str, Message], Any] | None = None,
) -> tuple[bool, Any]:
    """:func:`dispatch`, also returning what the consumer returned (a class
    consumer returns its instance): ``(matched, result)``. The testing
    ``Client.consume`` hands the result back to the test, as 1.x did."""
    matched = router.match(channel, content)
    if matched is None:
        _log_unrouted(router, channel, content)
        return False, None
    consumer, kwargs = matched
    message = Message(content, channel, channel_layer)
    if content.get("__retries__", 0) == message_retries:
        # The last allowed attempt: decorators use it for clearer warnings.
        message.__doomed__ = True
    if callback is not None:
        callback(channel, message)
    result = None
    consumer_started.send(
        sender=Worker, message=message, environ={}
    )  # environ: 1.x receivers take it
    try:
        try:
            with deferred_sends():
                result = consumer(message, **kwargs)
        except DenyConnection:
            if channel != "websocket.connect":
                raise ValueError(
                    f"{_name(consumer)} raised DenyConnection on {channel!r}; it is only "
                    "meaningful in a websocket.connect consumer"
                ) from None
            if message.reply_channel is not None:
                message.reply_channel.send({"close": True}, immediately=True)
        except ConsumeLater:
            _requeue(channel_layer, channel, content, consumer, message_retries)
        except ChannelSocketException as exc:
            # The exception answers the client itself (1.x): not an error.
            exc.run(message)
    finally:
        consumer_finished.send(sender=Worker, message=message)
    return True, result


def _log_unrouted(router: Router, channel: str, content: dict) -> None:
    path = content.get("path")
    if channel == "websocket.disconnect" and router.match("websocket.connect", content) is None:
        # Its websocket.connect was unrouted too and already logged (and rejected).
        logger.debug("no route for websocket.disconnect of unrouted path %r", path)
        return
    logger.warning(
        "no route matches a message on %r%s; add a route() for it or stop sending it%s",
        channel, f" (path {path!r})" if path is not None else "",
        " (a worker rejects this WebSocket at once: 403)" if channel == "websocket.connect"
        else "",
    )


def reject_connect(layer: BaseChannelLayer, content: dict) -> None:
    """Answer a ``websocket.connect`` that no consumer will answer (no route,
    or its consumer raised) with ``{"close": True}``: the server rejects the
    handshake (403) now instead of at its connect timeout."""
    reply_channel = content.get("reply_channel")
    if not isinstance(reply_channel, str):
        return
    try:
        layer.send(reply_channel, {"close": True})
    except Exception:
        logger.exception("could not reject the WebSocket on %s", reply_channel)


def _requeue(layer: BaseChannelLayer, channel: str, content: dict, consumer: Any,
             message_retries: int = MESSAGE_RETRIES) -> None:
    retries = content.get("__retries__", 0) + 1
    if retries > message_retries:
        logger.warning(
            "dropping a message on %r: %s raised ConsumeLater %d times",
            channel, _name(consumer), message_retries,
        )
        return
    try:
        layer.send(channel, {**content, "__retries__": retries})
    except layer.ChannelFull:
        logger.error("could not requeue a message on %r (ConsumeLater): channel full", channel)


def _router_of(channel_layer: Any) -> Router:
    """The router a layer (or 1.x-style wrapper) routes with: the wrapper's
    ``.router``, else the routing of the layer's alias."""
    router = getattr(channel_layer, "router", None)
    if isinstance(router, Router):
        return router

    return get_router(getattr(channel_layer, "alias", None) or "default")


class Worker:
    """Receives from the routed channels and runs consumers until stopped.

    The signature is 1.x's: ``Worker(channel_layer, callback=None,
    message_retries=10, signal_handlers=True, only_channels=None,
    exclude_channels=None)``. The router comes from ``router=`` when given,
    else from the layer: a :class:`~chanlite.asgi.ChannelLayerWrapper`'s
    ``.router``, or the routing of the layer's alias. ``Worker(layer,
    router)`` (a Router or routing list in second place) also still works.

    ``only_channels`` / ``exclude_channels`` are glob lists narrowing the
    channels taken from ``router.channels`` (background tasks are simply
    routes on custom channels, e.g. ``"thumbnails"``); see
    :meth:`apply_channel_filters`.

    ``signal_handlers``: when :meth:`run` is called on the main thread,
    SIGTERM/SIGINT stop the worker (the running consumer finishes first) and
    the previous handlers come back when ``run`` returns. Elsewhere (worker
    threads) there are no signal handlers to install; stop with :meth:`stop`.
    """

    #: Seconds an idle receive waits before re-checking the stop flag (a
    #: safety net: ``stop()`` normally wakes the receive immediately).
    receive_timeout: float = 5.0
    #: Seconds to wait before receiving again after the layer itself failed
    #: (e.g. Redis down), so a broken layer is not hammered in a tight loop.
    error_backoff: float = 1.0
    #: Seconds between checks that the layer is still shared (an IPC segment
    #: removed under a running worker leaves it serving a private copy).
    detach_check_interval: float = 2.0
    #: Why this worker stopped on its own (``None``: it did not).
    failure: str | None = None

    def __init__(
        self,
        channel_layer: BaseChannelLayer | Any,
        callback: Callable[[str, Message], Any] | Any = None,
        message_retries: int = MESSAGE_RETRIES,
        signal_handlers: bool = True,
        only_channels: Iterable[str] | None = None,
        exclude_channels: Iterable[str] | None = None,
        *,
        router: Router | Any = None,
    ) -> None:
        if callback is not None and not callable(callback) and router is None:
            # ``Worker(layer, router)``: a Router / routing list is not callable.
            router, callback = callback, None
        if type(message_retries) is not int or message_retries < 0:
            raise ValueError(f"message_retries must be an int >= 0, not {message_retries!r}")
        self.channel_layer = channel_layer
        self.callback = callback
        self.message_retries = message_retries
        self.signal_handlers = signal_handlers
        self.only_channels = list(only_channels) if only_channels else None
        self.exclude_channels = list(exclude_channels) if exclude_channels else None
        self._router = as_router(router) if router is not None else None
        self._channels: list[str] | None = None
        self._wake: str | None = None
        self._stopping = threading.Event()
        self.busy = threading.Event()  # set while a consumer runs (tests, draining)
        #: True while a message is being handled (1.x's attribute).
        self.in_job = False
        if self._router is not None or channel_layer is not None:
            self.channels  # noqa: B018 - fail now on a routing that names nothing

    @property
    def router(self) -> Router:
        """The Router this worker dispatches with (see the class docstring)."""
        if self._router is None:
            self._router = _router_of(self.channel_layer)
        return self._router

    @router.setter
    def router(self, router: Router | Any) -> None:
        self._router = as_router(router)
        self._channels = None

    def apply_channel_filters(self, channels: Iterable[str]) -> list[str]:
        """``channels`` kept by ``only_channels`` then thinned by
        ``exclude_channels`` (``fnmatchcase`` globs), in their given order."""
        channels = list(channels)
        if self.only_channels:
            channels = [c for c in channels
                        if any(fnmatch.fnmatchcase(c, g) for g in self.only_channels)]
        if self.exclude_channels:
            channels = [c for c in channels
                        if not any(fnmatch.fnmatchcase(c, g) for g in self.exclude_channels)]
        return channels

    @property
    def channels(self) -> list[str]:
        """The channels this worker receives from (sorted); ValueError when
        the routing and the filters leave none."""
        if self._channels is None:
            router = self.router
            channels = sorted(set(self.apply_channel_filters(router.channels)))
            if not channels:
                only, exclude = self.only_channels, self.exclude_channels
                raise ValueError(
                    f"this worker would listen on no channel: the routing names "
                    f"{sorted(router.channels) or 'none'}"
                    + (f", only_channels={only}" if only else "")
                    + (f", exclude_channels={exclude}" if exclude else "")
                    + "; add routes or loosen the channel filters"
                )
            self._channels = channels
        return self._channels

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def termed(self) -> bool:
        """1.x's stop flag: True once the worker was told to stop. Setting it
        True is :meth:`stop`."""
        return self._stopping.is_set()

    @termed.setter
    def termed(self, value: bool) -> None:
        if value:
            self.stop()
        else:
            self._stopping.clear()

    def _wake_channel(self) -> str:
        if self._wake is None:
            self._wake = self.channel_layer.new_channel("chanlite.worker.wake?")
        return self._wake

    def ready(self) -> None:
        """Called once the worker is set up, before the first receive."""
        worker_ready.send(sender=self, worker=self)  # sender: the instance, as in 1.x

    def sigterm_handler(self, signo: int, stack_frame: Any = None) -> None:
        """SIGTERM/SIGINT: stop taking messages; a running consumer finishes."""
        logger.info(
            "signal %s: worker stopping%s", signo,
            " after the running consumer" if self.in_job else "",
        )
        self.stop()

    def _install_signal_handlers(self) -> dict[int, Any] | None:
        if not self.signal_handlers or threading.current_thread() is not threading.main_thread():
            return None
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self.sigterm_handler)
        return previous

    def run(self) -> None:
        """Block on the channels, running consumers, until :meth:`stop`."""
        listen = [*self.channels, self._wake_channel()]
        previous = self._install_signal_handlers()
        # debug: one line per thread; the commands print one banner instead
        logger.debug("worker listening on %s", ", ".join(self.channels))
        next_check = time.monotonic() + self.detach_check_interval
        try:
            self.ready()
            # ``termed`` is read exactly once per turn (1.x tests subclass it
            # as a countdown property to run a fixed number of turns).
            while not self.termed:
                self.in_job = False
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.detach_check_interval
                    reason = self.channel_layer.detached()
                    if reason:
                        self.failure = reason
                        logger.error("the channel layer is gone: %s; this worker stops "
                                     "(restart it once the layer is back)", reason)
                        self._stopping.set()
                        break
                try:
                    channel, content = self.channel_layer.receive(
                        listen, block=True, timeout=self.receive_timeout
                    )
                except Exception:
                    logger.exception(
                        "channel layer receive failed; retrying in %ss", self.error_backoff
                    )
                    self._stopping.wait(self.error_backoff)
                    continue
                if channel is None or content is None or channel == self._wake:
                    continue
                self.in_job = True
                if self._stopping.is_set() and self._put_back(channel, content):
                    break
                self.handle(channel, content)
        finally:
            self.in_job = False
            if previous:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            self._drain_wake()

    def _put_back(self, channel: str, content: dict) -> bool:
        """A message taken just as stop() was called goes back to its channel,
        so "stopped" really means no new consumer starts (another worker, or
        this process after a restart, will run it)."""
        try:
            self.channel_layer.send(channel, content)
        except Exception:
            return False  # could not put it back: run it rather than lose it
        return True

    def handle(self, channel: str, content: dict) -> None:
        """Dispatch one message, logging (not raising) the consumer's error."""
        self.busy.set()
        try:
            if not dispatch(self.channel_layer, self.router, channel, content,
                            message_retries=self.message_retries, callback=self.callback) and (
                    channel == "websocket.connect"):
                reject_connect(self.channel_layer, content)
        except Exception:
            if channel == "websocket.connect":
                logger.exception("WebSocket %r rejected (403): its websocket.connect consumer "
                                 "raised", content.get("path"))
                reject_connect(self.channel_layer, content)
            else:
                logger.exception("error in the consumer of a message on %r", channel)
        finally:
            self.busy.clear()

    def stop(self) -> None:
        """Stop taking messages; the current consumer (if any) finishes."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        try:
            self.channel_layer.send(self._wake_channel(), {"wake": True})
        except Exception:  # the receive timeout will notice the flag anyway
            logger.debug("could not send a wake-up to %s", self._wake, exc_info=True)

    def _drain_wake(self) -> None:
        if self._wake is None:
            return
        try:
            self.channel_layer.receive([self._wake], block=False)
        except Exception:  # pragma: no cover - best effort
            pass


def __getattr__(name: str) -> Any:
    # WorkerPool and GracefulShutdown live in chanlite.worker_pool (threads
    # and process signals: a concept of their own); imported lazily because
    # that module builds on Worker, so an eager import here would be a circle.
    if name in ("WorkerPool", "GracefulShutdown"):
        from . import worker_pool  # noqa: PLC0415 — PEP 562: loaded on first use

        return getattr(worker_pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
