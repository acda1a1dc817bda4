"""``BaseConsumer``: class consumers, dispatched by channel name.

A class consumer is routed with ``route_class(MyConsumer, **filters)`` (or
``MyConsumer.as_route(**filters)``). Calling the class with a message — as a
worker does, ``MyConsumer(message, **kwargs)`` — makes a fresh instance per
message and runs the method that ``method_mapping`` names for the message's
channel, so instance state never leaks between messages or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..auth import channel_session_user
from ..message import Message
from ..routing import RouteClass, route_class
from ..sessions import channel_session

__all__ = ["BaseConsumer"]


class BaseConsumer:
    """Dispatch a message to ``getattr(self, method_mapping[channel])``.

    Set ``channel_session = True`` or ``channel_session_user = True`` to wrap
    every handler in the matching decorator.
    """

    method_mapping: dict[str, str] = {}
    channel_session = False
    channel_session_user = False

    def __init__(self, message: Message, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        self.dispatch(message, **kwargs)

    @classmethod
    def channel_names(cls) -> set[str]:
        """The channels this consumer handles (what route_class routes)."""
        return set(cls.method_mapping)

    @classmethod
    def as_route(cls, attrs: dict[str, Any] | None = None, **filters: Any) -> RouteClass:
        """A route for this class; ``attrs`` makes a subclass with those attributes."""
        target: type = cls
        if attrs:
            if not isinstance(attrs, dict):
                raise TypeError(
                    f"as_route(attrs=...) takes a dict of class attributes, not {attrs!r}"
                )
            target = type(cls.__name__, (cls,), attrs)
        return route_class(target, **filters)

    def get_handler(self, message: Message, **kwargs: Any) -> Callable[..., Any]:
        """The bound method for the message's channel, wrapped in decorators."""
        try:
            name = self.method_mapping[message.channel.name]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__} has no method_mapping entry for channel "
                f"{message.channel.name!r}; it handles {sorted(self.method_mapping)}"
            ) from None
        handler = getattr(self, name)
        if self.channel_session_user:
            return channel_session_user(handler)
        if self.channel_session:
            return channel_session(handler)
        return handler

    def dispatch(self, message: Message, **kwargs: Any) -> Any:
        """Run the handler; override to add behaviour around every message."""
        return self.get_handler(message, **kwargs)(message, **kwargs)
