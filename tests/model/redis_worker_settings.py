"""Settings for the runworker-on-Redis subprocess test: only CHANNEL_LAYERS changes.

That is the promise of the Redis layer: a project moves from the IPC layer
to Redis by editing ``CHANNEL_LAYERS`` alone. The URL and prefix come from
the test through the environment.
"""

import os

from tests.model.worker_settings import *  # noqa: F403

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.redis.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("CHANLITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")],
            "prefix": os.environ.get("CHANLITE_TEST_REDIS_PREFIX", "chanlite-test-worker"),
            "reconnect_backoff_max": 0.2,
        },
        "ROUTING": "tests.model.worker_routing.channel_routing",
    },
}
