"""Settings of the scratch project the docs' code blocks run in
(tests/docs/test_python_blocks.py copies this file next to the blocks).

A small but complete Django project: auth, sessions, chanlite, an in-memory
channel layer. Blocks that show settings are excerpts; they run as modules
of their own, not as these settings.
"""

import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "docs-tests-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "chanlite",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.path.join(BASE_DIR, "db.sqlite3")}}
ROOT_URLCONF = "docs_urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
        "ROUTING": "docs_routing.channel_routing",
    },
}
