"""Settings of the runworker process in tests/compat/test_handler_e2e.py: views of
tests/compat/handler_urls.py, run by ViewConsumer, on the IPC layer named by
``CHANLITE_TEST_IPC_PREFIX``."""

import os

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.compat.handler_urls"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("CHANLITE_TEST_IPC_PREFIX", "chanlite-handler"),
                   "memory": 8 << 20, "max_channels": 256, "max_groups": 16,
                   "max_message_size": 64 * 1024},
        "ROUTING": "tests.compat.handler_routing.channel_routing",
    },
}
