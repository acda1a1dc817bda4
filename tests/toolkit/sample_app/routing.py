"""Routing of the sample app (what a project's ``routing.py`` looks like)."""

from chanlite.routing import route, route_class

from . import consumers

echo_routing = [
    route("websocket.connect", consumers.echo_connect, path=r"^/echo/$"),
    route("websocket.receive", consumers.echo_receive, path=r"^/echo/$"),
]

channel_routing = [
    *echo_routing,
    route_class(consumers.Calculator, path=r"^/calc/$"),
    route_class(consumers.Streams, path=r"^/streams/$"),
    route_class(consumers.Whoami, path=r"^/whoami/$"),
    route_class(consumers.Chat, path=r"^/chat/(?P<room>\w+)/$"),
    route("websocket.connect", consumers.echo_connect, path=r"^/tasks/$"),
    route("websocket.receive", consumers.task_start, path=r"^/tasks/$"),
    route("sample.tasks", consumers.task_run),
    route_class(consumers.Hello, path=r"^/chan/hello/$"),
    route("http.request", consumers.countdown, path=r"^/chan/countdown/$"),
]
