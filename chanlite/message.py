"""``Message``: what a consumer receives — content plus where it came from.

Kept small and dict-like (``message["path"]``, ``"text" in message``) as in
Channels 1.x, so consumers read the ASGI fields directly. The session and
user attributes are filled in by the decorators of :mod:`chanlite.sessions`
and :mod:`chanlite.auth`; reading one that no decorator set raises an
``AttributeError`` that names the decorator to add.
"""

from __future__ import annotations

import copy
from collections.abc import ItemsView, KeysView, ValuesView
from typing import TYPE_CHECKING, Any

from .channel import Channel

if TYPE_CHECKING:  # pragma: no cover
    from .layers.base import BaseChannelLayer

__all__ = ["Message"]

_DECORATED = {
    "channel_session": "@channel_session (chanlite.sessions)",
    "http_session": "@http_session (chanlite.sessions)",
    "user": "@channel_session_user, @http_session_user or "
    "@channel_session_user_from_http (chanlite.auth)",
}


class Message:
    """One received message.

    Attributes:
        content: the message dict as received.
        channel: the :class:`~chanlite.Channel` it arrived on.
        reply_channel: a :class:`~chanlite.Channel` for ``content["reply_channel"]``,
            or ``None`` when the message has none.
        channel_layer: the layer it came from (replies go back through it).
    """

    #: True on the last attempt the worker allows (``__retries__`` reached
    #: ``message_retries``): decorators use it for clearer warnings.
    __doomed__: bool = False

    def __init__(
        self,
        content: dict,
        channel_name: str | None = None,
        channel_layer: BaseChannelLayer | None = None,
    ) -> None:
        # ``Message(content, None, None)`` is how 1.x unit tests built
        # messages by hand: no channel name and the default alias's layer.
        self.content = content
        self._channel_layer = channel_layer
        if channel_name is None:
            self.channel = Channel._unnamed(channel_layer)
        else:
            self.channel = Channel(channel_name, channel_layer=channel_layer)
        reply = content.get("reply_channel")
        self.reply_channel = Channel(reply, channel_layer=channel_layer) if reply else None

    @property
    def channel_layer(self) -> BaseChannelLayer:
        """The layer the message came from (replies go back through it); the
        default alias's layer when the message was built without one."""
        if self._channel_layer is None:
            return self.channel.channel_layer
        return self._channel_layer

    @channel_layer.setter
    def channel_layer(self, layer: BaseChannelLayer) -> None:
        self._channel_layer = layer

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, i.e. no decorator set it.
        if name in _DECORATED:
            raise AttributeError(
                f"message.{name} is not set: decorate the consumer with {_DECORATED[name]} "
                "(class consumers: set channel_session / channel_session_user / http_user)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # dict-like access to content
    def __getitem__(self, key: str) -> Any:
        return self.content[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.content[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.content

    def get(self, key: str, default: Any = None) -> Any:
        return self.content.get(key, default)

    def keys(self) -> KeysView[str]:
        return self.content.keys()

    def values(self) -> ValuesView[Any]:
        return self.content.values()

    def items(self) -> ItemsView[str, Any]:
        return self.content.items()

    def copy(self) -> Message:
        """A message with a deep copy of the content, same channel and layer."""
        return type(self)(copy.deepcopy(self.content), self.channel.name, self._channel_layer)

    def __repr__(self) -> str:
        return f"<Message channel={self.channel.name!r} keys={sorted(self.content)}>"
