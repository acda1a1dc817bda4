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
if os.environ.get("BENCH_STACK") == "channels4":  # the peers: Channels 4's own layer
    # Room for a broadcast's burst, as chanlite's protocol channels above
    # (Channels' default of 100 per channel would drop group messages).
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                  "CONFIG": {"capacity": 10_000}}}


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


def _channels4_application():
    """The same workloads written Channels 4's way (async consumers), for
    Daphne and uvicorn: ``bench.server_project:asgi_application``."""
    import django

    django.setup()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application

    class Echo(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data, bytes_data=bytes_data)

    class Broadcast(AsyncWebsocketConsumer):
        async def connect(self):
            await self.channel_layer.group_add("bench-bcast", self.channel_name)
            await self.accept()

        async def bench_message(self, event):
            await self.send(text_data=event["text"])

    class BroadcastSend(AsyncWebsocketConsumer):
        async def receive(self, text_data=None, bytes_data=None):
            await self.channel_layer.group_send("bench-bcast",
                                                {"type": "bench.message", "text": text_data})

    return ProtocolTypeRouter({
        "http": get_asgi_application(),
        "websocket": URLRouter([
            path("echo/", Echo.as_asgi()),
            path("bcast/", Broadcast.as_asgi()),
            path("bcast-send/", BroadcastSend.as_asgi()),
        ]),
    })


def __getattr__(name):
    # Lazy so that importing this module as settings does not import chanlite.routing
    # (which needs settings) too early.
    if name == "channel_routing":
        return _routing()
    if name == "channel_layer":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.server_project")
        from chanlite.asgi import get_channel_layer

        return get_channel_layer()
    if name == "asgi_application":  # Daphne / uvicorn + Channels 4 (BENCH_STACK=channels4)
        return _channels4_application()
    if name == "wsgi_application":  # waitress / gunicorn
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.server_project")
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()
    raise AttributeError(name)
