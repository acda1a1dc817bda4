"""Generic (class) consumers, as in ``channels.generic`` of Channels 1.x."""

from .base import BaseConsumer
from .http import HttpConsumer
from .websockets import (
    JsonWebsocketConsumer,
    WebsocketConsumer,
    WebsocketDemultiplexer,
    WebsocketMultiplexer,
)

__all__ = [
    "BaseConsumer",
    "HttpConsumer",
    "WebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketDemultiplexer",
    "WebsocketMultiplexer",
]
