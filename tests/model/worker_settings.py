"""Settings for the runworker subprocess tests: the suite's settings on the IPC layer.

The test process and the ``runworker`` subprocess share messages through the
IPC segment named by ``CHANLITE_TEST_IPC_PREFIX`` (unique per test).
"""

import os

from tests.settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
        "CONFIG": {
            "prefix": os.environ.get("CHANLITE_TEST_IPC_PREFIX", "chanlite-test-worker"),
            "memory": 4 * 1024 * 1024,
            "max_message_size": 64 * 1024,
        },
        "ROUTING": "tests.model.worker_routing.channel_routing",
    },
    "memory": {
        "BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
        "ROUTING": "tests.model.worker_routing.channel_routing",
    },
    "norouting": {"BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
                  "CONFIG": {"prefix": "chanlite-test-unused", "memory": 4 * 1024 * 1024,
                             "max_message_size": 64 * 1024}},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"chanlite": {"handlers": ["stderr"], "level": "INFO"}},
}
