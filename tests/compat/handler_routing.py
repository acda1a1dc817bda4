"""Routing of tests/compat/test_handler_e2e.py: every HTTP request to Django views
in a worker (a catch-all ``http.request`` route, as Channels 1.x ran views)."""

from chanlite.routing import route

channel_routing = [route("http.request", "chanlite.handler.ViewConsumer")]
