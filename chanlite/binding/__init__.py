"""Data binding (``channels.binding`` of Channels 1.x): see docs/binding.md.

``from chanlite.binding import Binding`` and
``from chanlite.binding.websockets import WebsocketBinding`` work as the 1.x
imports did.
"""

from .base import CREATE, DELETE, UPDATE, Binding, BindingMetaclass, InvalidInbound

__all__ = ["Binding", "BindingMetaclass", "InvalidInbound", "CREATE", "UPDATE", "DELETE"]
