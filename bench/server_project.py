"""A minimal Django project for bench/server.py: settings, URLconf, consumers, asgi.

Used as ``DJANGO_SETTINGS_MODULE=bench.server_project`` and served with
``chanlite serve bench.server_project:channel_layer``. The hello-world view
runs through Django's default middleware stack (what ``startproject``
generates), as in the peer figures of issue 5.
"""

import os

from django.http import HttpResponse
from django.urls import path

SECRET_KEY = "bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "bench.server_project"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "chanlite",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
LOGGING_CONFIG = None
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": os.environ.get("BENCH_LAYER", "chanlite.layers.memory.InMemoryChannelLayer"),
        "CONFIG": {
            # The server's reply prefix is one queue for all its connections:
            # give it room for a broadcast to every client at once.
            "channel_capacity": {"chanlite.response.*": 100_000, "websocket.*": 10_000,
                                 "http.*": 10_000},
        },
        "ROUTING": "bench.server_project.channel_routing",
    },
}
if os.environ.get("BENCH_LAYER_DEFAULTS"):  # echo1000: a default install's layer
    del CHANNEL_LAYERS["default"]["CONFIG"]


def hello(request):
    return HttpResponse(b"Hello, world")


urlpatterns = [path("hello/", hello)]


def ws_accept(message):
    message.reply_channel.send({"accept": True})


def ws_echo(message):
    if "text" in message.content:
        message.reply_channel.send({"text": message["text"]})
    else:
        message.reply_channel.send({"bytes": message["bytes"]})


def bcast_join(message):
    from chanlite.channel import Group

    Group("bench-bcast", channel_layer=message.channel_layer).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


def bcast_send(message):
    from chanlite.channel import Group

    Group("bench-bcast", channel_layer=message.channel_layer).send({"text": message["text"]})


def noop(message):
    pass


def _routing():
    from chanlite.routing import route

    return [
        route("websocket.connect", bcast_join, path=r"^/bcast/$"),
        route("websocket.connect", ws_accept),
        route("websocket.receive", bcast_send, path=r"^/bcast-send/$"),
        route("websocket.receive", ws_echo),
        route("websocket.disconnect", noop),
    ]


def __getattr__(name):
    # Lazy so that importing this module as settings does not import chanlite.routing
    # (which needs settings) too early.
    if name == "channel_routing":
        return _routing()
    if name == "channel_layer":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.server_project")
        from chanlite.asgi import get_channel_layer

        return get_channel_layer()
    raise AttributeError(name)
