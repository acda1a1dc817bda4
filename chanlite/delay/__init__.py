"""``chanlite.delay``: messages delivered later, as Channels 1.x's ``channels.delay``.

Send a request to the ``asgi.delay`` channel::

    Channel("asgi.delay").send({"channel": "chat.expire", "content": {"id": 7},
                                "delay": 5000})         # milliseconds
    DelayedMessage("chat.expire", {"id": 7}, delay=5000).send()   # the same

and the delay service sends ``content`` to ``channel`` when the delay is up.
The service runs inside ``runserver`` / ``chanlite serve`` for the in-memory
layer, and as ``manage.py rundelay`` (``chanlite.delay`` in INSTALLED_APPS)
for the IPC and Redis layers, where accepted requests are kept in the
database and survive a restart. See docs/delay.md.
"""

from typing import Any

from .request import (
    DELAY_CHANNEL,
    MAX_DELAY_MS,
    DelayedMessage,
    DelayRequest,
    InvalidDelayRequest,
    parse_request,
)

__all__ = ["DELAY_CHANNEL", "MAX_DELAY_MS", "DelayedMessage", "DelayRequest",
           "InvalidDelayRequest", "parse_request", "DelayService"]


def __getattr__(name: str) -> Any:
    if name == "DelayService":  # lazily: keeps `import chanlite.delay` light
        from .service import DelayService  # noqa: PLC0415 — PEP 562: loaded on first use

        return DelayService
    raise AttributeError(f"module 'chanlite.delay' has no attribute {name!r}")
