"""Settings for the ``rundelay`` subprocess tests: a file database shared with the
test, and the IPC or Redis layer named by the environment.

``CHANLITE_TEST_DELAY_DB`` is the SQLite file; ``CHANLITE_TEST_DELAY_LAYER``
is ``ipc`` (prefix ``CHANLITE_TEST_IPC_PREFIX``) or ``redis`` (URL
``CHANLITE_TEST_REDIS_URL``, prefix ``CHANLITE_TEST_REDIS_PREFIX``).
"""

import os

from tests.model.worker_settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("CHANLITE_TEST_DELAY_DB", ":memory:")}}

if os.environ.get("CHANLITE_TEST_DELAY_LAYER") == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chanlite.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ.get("CHANLITE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")],
                "prefix": os.environ.get("CHANLITE_TEST_REDIS_PREFIX", "chanlite-test-delay"),
            },
        },
    }
