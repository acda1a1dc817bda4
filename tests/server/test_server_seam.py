"""The Server's side of the seam, without sockets: replies go through the
ReplyRegistry, shutdown asks each session to drain, access_log is read."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.server.config import ServerConfig
from chanlite.server.host import ReplyRegistry
from chanlite.server.http import RequestHead
from chanlite.server.server import Server


class RecordingSession:
    """A Session that records what the server calls on it."""

    def __init__(self) -> None:
        self.conn = self  # the server aborts session.conn when on_reply raises
        self.replies: list[dict[str, Any]] = []
        self.drains = 0
        self.aborted = False
        self.fail = False

    def on_reply(self, message: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("broken session")
        self.replies.append(message)

    def drain(self) -> None:
        self.drains += 1

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def make_server():
    servers: list[Server] = []

    def make(**config: Any) -> Server:
        server = Server(InMemoryChannelLayer(), ServerConfig(**config),
                        wsgi_app=lambda environ, start_response: [], router=None)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.loop.close()


def test_replies_reach_only_listening_sessions(make_server):
    server = make_server()
    session = RecordingSession()
    channel = server.new_reply_channel()
    assert channel.startswith(server.prefix) and channel not in server.replies
    server.replies.listen(channel, session)  # type: ignore[arg-type]
    server._deliver([(channel, {"text": "a"}), (server.prefix + "gone", {"text": "b"})])
    assert session.replies == [{"text": "a"}]
    server.replies.forget(channel)
    server._deliver([(channel, {"text": "late"})])
    assert session.replies == [{"text": "a"}]


def test_a_session_failing_on_a_reply_loses_only_its_connection(make_server):
    server = make_server()
    broken, fine = RecordingSession(), RecordingSession()
    broken.fail = True
    server.replies.listen("x!1", broken)  # type: ignore[arg-type]
    server.replies.listen("x!2", fine)  # type: ignore[arg-type]
    server._deliver([("x!1", {"text": "a"}), ("x!2", {"text": "b"})])
    assert broken.aborted and not fine.aborted and fine.replies == [{"text": "b"}]


def test_shutdown_asks_every_session_to_drain(make_server):
    server = make_server()
    sessions = [RecordingSession() for _ in range(3)]

    class Conn:
        def __init__(self, session: RecordingSession) -> None:
            self.session = session

    server.connections.update(Conn(s) for s in sessions)  # type: ignore[misc]
    server._begin_drain(5.0)
    server._begin_drain(5.0)  # idempotent
    assert server.draining and [s.drains for s in sessions] == [1, 1, 1]


def test_registry_forget_of_an_empty_or_unknown_channel_is_harmless():
    registry = ReplyRegistry("p!")
    registry.forget("")
    registry.forget("p!unknown")
    assert len(registry) == 0


@pytest.mark.parametrize("access_log", [True, False])
def test_config_access_log_is_read_by_the_server(make_server, caplog, access_log):
    server = make_server(access_log=access_log)
    caplog.set_level(logging.INFO, logger="chanlite.server.access")
    head = RequestHead(method="GET", target=b"/x", path="/x", raw_path=b"/x", query_string=b"",
                       headers=[], http_version="1.1")
    server.access(head, 200, 2, ["10.0.0.1", 1], None)
    lines = [r.getMessage() for r in caplog.records if r.name == "chanlite.server.access"]
    assert lines == (['"GET /x HTTP/1.1" 200 2'] if access_log else [])
