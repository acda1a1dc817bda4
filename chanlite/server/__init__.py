"""chanlite's interface server: HTTP and WebSocket to ASGI 1.0 messages and back.

Run it with ``manage.py runserver`` (development) or ``chanlite serve
module:channel_layer`` (production); embed it with :class:`Server`. See
docs/server.md for users and docs/architecture.md ("Interface server") for
how the modules fit together.
"""

from .config import ServerConfig
from .server import Server

__all__ = ["Server", "ServerConfig"]
