"""Where the delay service keeps accepted requests: memory, or the database.

The service's schedule (a heap ordered by due time) always lives in memory;
a store is what makes it survive a restart. Three operations suffice:

* ``add(due, channel, data) -> key`` when a request is accepted,
* ``load()`` once at start-up (the rows of a previous run),
* ``claim(key) -> bool`` just before sending: removes the entry and says
  whether *this* process removed it. Sending only after a successful claim
  is what rules out a double delivery, whatever crashes or how many delay
  processes share the table.

:class:`MemoryStore` is for the in-memory layer (the thread inside
``runserver``) and for tests: its messages die with the process, like the
layer's own. :class:`DatabaseStore` is ``rundelay``'s, on the IPC and Redis
layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from django.db import DatabaseError, connections

__all__ = ["Entry", "MemoryStore", "DatabaseStore"]

T = TypeVar("T")


class Entry(NamedTuple):
    """One scheduled message: due time (layer clock), store key, target, encoded content."""

    due: float
    key: int
    channel: str
    data: bytes


class MemoryStore:
    """Nothing to persist: keys are a counter and every claim succeeds."""

    durable = False

    def __init__(self) -> None:
        self._keys = itertools.count(1)

    def load(self) -> list[Entry]:
        return []

    def add(self, due: float, channel: str, data: bytes) -> int:
        return next(self._keys)

    def claim(self, key: int) -> bool:
        return True

    def __repr__(self) -> str:
        return "<MemoryStore>"


class DatabaseStore:
    """Rows of :class:`chanlite.delay.models.StoredDelay` (``chanlite.delay``
    in INSTALLED_APPS, migrated), on the ``using`` database alias.

    Every call is one autocommit statement. The connection is kept open (a
    delay process is long-lived and not a request, so ``CONN_MAX_AGE`` does
    not apply); after a database error it is closed, so the next call
    reconnects once the database is back. A ``claim`` whose DELETE committed
    but whose answer was lost looks unclaimed on retry: that message is lost,
    never sent twice.
    """

    durable = True

    def __init__(self, using: str = "default") -> None:
        from .models import StoredDelay  # noqa: PLC0415 — models need Django's app registry

        self.model = StoredDelay
        self.using = using

    def _call(self, operation: Callable[[Any], T]) -> T:
        try:
            return operation(self.model.objects.using(self.using))
        except DatabaseError:
            connection = connections[self.using]
            if not connection.in_atomic_block:  # (a test transaction must stay open)
                connection.close()
            raise

    def load(self) -> list[Entry]:
        rows = self._call(lambda objects: list(
            objects.order_by("due", "id").values_list("due", "id", "channel", "content")))
        return [Entry(due, key, channel, bytes(data)) for due, key, channel, data in rows]

    def add(self, due: float, channel: str, data: bytes) -> int:
        return self._call(lambda objects: objects.create(due=due, channel=channel,
                                                         content=data).pk)

    def claim(self, key: int) -> bool:
        return self._call(lambda objects: objects.filter(pk=key).delete()[0] > 0)

    def count(self) -> int:
        return self._call(lambda objects: objects.count())

    def __repr__(self) -> str:
        return f"<DatabaseStore {self.model._meta.db_table} using={self.using!r}>"
