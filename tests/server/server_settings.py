"""Test settings for server subprocesses: the test settings plus the server tests' routing."""

from ..settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
        "ROUTING": "tests.server.server_consumers.channel_routing",
    },
}
