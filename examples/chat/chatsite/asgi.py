"""The channel layer for ``chanlite serve chatsite.asgi:channel_layer``.

As in a Channels 1.x project: the production server imports this module,
which sets the settings module and returns the configured layer.
"""

import os

from chanlite.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
channel_layer = get_channel_layer()
