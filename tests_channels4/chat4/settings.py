"""A tiny Channels 4 chat project: what a user's project looks like with
chanlite's IPC layer (the end-to-end test runs it under two uvicorns)."""

import os

SECRET_KEY = "chat4-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "channels", "chanlite.channels4"]
DATABASES = {}
USE_TZ = True
ROOT_URLCONF = "tests_channels4.chat4.urls"
ASGI_APPLICATION = "tests_channels4.chat4.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.channels4.IPCChannelLayer",
        "CONFIG": {"prefix": os.environ.get("CHANLITE_IPC_PREFIX", "chat4")},
    }
}
