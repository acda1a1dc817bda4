"""The ``asgi.py`` of the server command tests:
``chanlite serve tests.server.server_asgi:channel_layer``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.server.server_settings")

from chanlite.asgi import get_channel_layer  # noqa: E402

channel_layer = get_channel_layer()
