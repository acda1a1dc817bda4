"""Request bodies with bounded memory: a shared budget, and spooling to disk.

Twenty clients each sending a 10 MiB body used to cost 200 MiB of RAM while
their views waited for a thread. Now a body is kept in memory only while it
is small (``body_spool_threshold``, 512 KiB by default) *and* the bytes held
by all connections together stay under ``max_body_memory``; beyond either,
it continues in an anonymous temporary file (as waitress does) and the view
reads ``wsgi.input`` from that file. Bodies going to consumers are cut into
``http.request.body`` messages, so they take from the same budget only
until their chunk is handed to the layer.
"""

from __future__ import annotations

import io
import tempfile
import threading
from typing import BinaryIO

__all__ = ["MemoryBudget", "SpooledBody"]


class MemoryBudget:
    """Bytes of request bodies held in memory by every connection together.

    Thread-safe: the I/O loop takes, and WSGI pool threads give back when a
    view is done with its body.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) if over the limit."""
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        if size:
            with self._lock:
                self.used -= size


class SpooledBody:
    """One WSGI request's body: memory while small and within budget, then a file.

    Written on the I/O loop as bytes arrive; read by the view through
    :meth:`reader`; :meth:`close` (by the pool thread, after the view) gives
    the memory back and deletes the file.
    """

    __slots__ = ("budget", "threshold", "size", "_chunks", "_held", "_file", "_reader")

    def __init__(self, budget: MemoryBudget, threshold: int) -> None:
        self.budget = budget
        self.threshold = threshold
        self.size = 0
        self._chunks: list[bytes] = []
        self._held = 0
        self._file: BinaryIO | None = None
        self._reader: BinaryIO | None = None

    @property
    def spooled(self) -> bool:
        """True once the body lives in a temporary file."""
        return self._file is not None

    def write(self, data: bytes) -> None:
        """Append ``data``. Raises ``OSError`` if a temporary file cannot be
        created or written (no fds, disk full): the caller answers 503."""
        self.size += len(data)
        if self._file is None:
            if self._held + len(data) <= self.threshold and self.budget.take(len(data)):
                self._chunks.append(data)
                self._held += len(data)
                return
            self._spill()
        assert self._file is not None
        self._file.write(data)

    def _spill(self) -> None:
        spool = tempfile.TemporaryFile(prefix="chanlite-body-")  # unlinked at once
        try:
            for chunk in self._chunks:
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        self._file = spool
        self._chunks = []
        self.budget.give(self._held)
        self._held = 0

    def reader(self) -> BinaryIO:
        """A binary file positioned at the body's start (``wsgi.input``)."""
        if self._reader is None:
            if self._file is not None:
                self._file.flush()
                self._file.seek(0)
                self._reader = self._file
            else:
                self._reader = io.BytesIO(b"".join(self._chunks))
                self._chunks = []
        return self._reader

    def close(self) -> None:
        """Give back the memory and delete the file (safe to call twice)."""
        self.budget.give(self._held)
        self._held = 0
        self._chunks = []
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # pragma: no cover
                pass
        self._file = None
        self._reader = None
