"""Signals around each consumer run (the consumer counterpart of Django's
``request_started`` / ``request_finished``).

``consumer_started`` and ``consumer_finished`` are sent by
:func:`chanlite.worker.dispatch` with ``message=`` the Message. Both are
connected to Django's ``close_old_connections`` so that a long-running
worker thread drops broken or expired database connections between
consumers exactly as a WSGI request would. A test harness that runs
consumers inside a test transaction may disconnect it, as Django's own test
client does for ``request_started``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import close_old_connections
from django.dispatch import Signal

__all__ = ["consumer_started", "consumer_finished", "worker_ready", "db_hygiene_disabled"]

#: Sent before a consumer runs; kwargs: ``message``, and ``environ`` (an empty
#: dict, which 1.x receivers take as an argument).
consumer_started = Signal()
#: Sent after a consumer ran (also when it raised); kwargs: ``message``.
consumer_finished = Signal()
#: Sent by a Worker when it starts listening; ``sender`` and ``worker`` are the
#: Worker instance (1.x sent the instance as ``sender``).
worker_ready = Signal()

_UID = "chanlite.close_old_connections"
consumer_started.connect(close_old_connections, dispatch_uid=_UID)
consumer_finished.connect(close_old_connections, dispatch_uid=_UID)


_disabled_depth = 0
_disabled_lock = threading.Lock()


@contextmanager
def db_hygiene_disabled() -> Iterator[None]:
    """Run consumers without ``close_old_connections`` (for tests).

    Inside a test transaction, closing "old" connections would end the
    transaction, and pytest-django forbids touching the database in tests
    not marked for it; Django's test client disconnects the same handler
    from ``request_started`` for the same reason. Reentrant: nested uses
    reconnect the handler only when the outermost one exits.
    """
    global _disabled_depth
    with _disabled_lock:
        _disabled_depth += 1
        if _disabled_depth == 1:
            consumer_started.disconnect(dispatch_uid=_UID)
            consumer_finished.disconnect(dispatch_uid=_UID)
    try:
        yield
    finally:
        with _disabled_lock:
            _disabled_depth -= 1
            if _disabled_depth == 0:
                consumer_started.connect(close_old_connections, dispatch_uid=_UID)
                consumer_finished.connect(close_old_connections, dispatch_uid=_UID)
