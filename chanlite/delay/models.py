"""Where ``rundelay`` keeps delayed messages until they are due.

One row per accepted ``asgi.delay`` request. The delay process is the only
writer: it inserts a row when it takes a request off the layer, reads all
rows once when it starts, and deletes a row *before* sending it (so a
message is never sent twice; see docs/delay.md). The table is not polled.
"""

from __future__ import annotations

from django.db import models


class StoredDelay(models.Model):
    #: When to send, in the layer's clock (seconds since the epoch for the
    #: IPC and Redis layers).
    due = models.FloatField(db_index=True)
    #: Where to send it (a channel name, at most 99 characters).
    channel = models.CharField(max_length=100)
    #: The message, encoded with the layer codec (msgpack: bytes stay bytes).
    content = models.BinaryField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due", "id"]
        verbose_name = "delayed message"

    def __str__(self) -> str:
        return f"to {self.channel} at {self.due:.3f}"
