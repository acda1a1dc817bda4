import os

from chanlite.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
channel_layer = get_channel_layer()
