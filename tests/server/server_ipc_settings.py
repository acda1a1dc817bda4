"""Settings for the runworker process of the IPC server tests.

The IPC prefix comes from ``CHANLITE_TEST_IPC_PREFIX`` so each test session
uses (and removes) its own shared-memory segment.
"""

import os

from ..settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
        "CONFIG": {
            "prefix": os.environ.get("CHANLITE_TEST_IPC_PREFIX", "chanlite-tests"),
            "memory": 8 << 20,
            "max_channels": 1024,
            "max_groups": 128,
        },
        "ROUTING": "tests.server.server_consumers.channel_routing",
    },
}
