"""The ``myproject`` the docs' commands name (tests/docs/test_shell_commands.py).

On the IPC layer, so that a server, workers and ``chanlite_ipc`` share one
store; the prefix and database come from the test (``DOCS_IPC_PREFIX``,
``DOCS_DB``) so concurrent runs never meet.
"""

import os

from docs_settings import *  # noqa: F403

ROOT_URLCONF = "myproject.urls"
# the delay service's app, for the `migrate chanlite_delay` / `rundelay` commands of delay.md
INSTALLED_APPS = [*INSTALLED_APPS, "chanlite.delay"]  # noqa: F405
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DOCS_DB", "db.sqlite3")}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.ipc.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("DOCS_IPC_PREFIX", "docs"), "memory": 4 << 20,
                   "max_channels": 256, "max_groups": 32},
        "ROUTING": "myproject.routing.channel_routing",
    },
}
