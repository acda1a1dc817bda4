"""End to end: a Channels 4 chat under two uvicorn processes on one host.

What a user's deployment does (``uvicorn --workers 2`` or two Daphnes behind
a proxy), with the real servers: a group message sent by a client of one
process reaches a client of the other, and SIGKILLing one process loses no
group state for the other (its clients keep chatting, a restarted process
rejoins the same groups).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websocket

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
RECV_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uvicorn:
    """One ``uvicorn`` process serving the chat4 project."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests_channels4.chat4.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), "--ws", "wsproto",
             "--lifespan", "off", "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env,
                           "DJANGO_SETTINGS_MODULE": "tests_channels4.chat4.settings"},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # bounded wait for the listening socket
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"uvicorn exited with {self.proc.returncode}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(
                        f"uvicorn did not listen within {START_TIMEOUT}s"
                    ) from None
                time.sleep(0.05)

    def connect(self, room: str) -> websocket.WebSocket:
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/ws/chat/{room}/", timeout=RECV_TIMEOUT
        )
        joined = json.loads(ws.recv())
        assert joined == {"joined": room, "pid": self.proc.pid}, joined
        return ws

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _say(ws: websocket.WebSocket, text: str) -> None:
    ws.send(json.dumps({"text": text}))


def _heard(ws: websocket.WebSocket) -> dict:
    return json.loads(ws.recv())


@pytest.fixture
def servers(ipc_channel_layers):
    started: list[Uvicorn] = []

    def start() -> Uvicorn:
        server = Uvicorn(ipc_channel_layers.env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_group_message_crosses_processes_and_survives_sigkill(servers, ipc_channel_layers):
    one, two = servers(), servers()
    alice = one.connect("lobby")
    bob = two.connect("lobby")

    _say(alice, "hello from one")
    assert _heard(bob) == {"text": "hello from one", "from_pid": one.proc.pid}
    assert _heard(alice) == {"text": "hello from one", "from_pid": one.proc.pid}
    _say(bob, "hello from two")
    assert _heard(alice) == {"text": "hello from two", "from_pid": two.proc.pid}
    assert _heard(bob) == {"text": "hello from two", "from_pid": two.proc.pid}

    one.kill()  # no disconnect handler, no cleanup: a crash
    store = ipc_channel_layers.layer.ipc
    store.check()  # every shared-memory invariant still holds
    members = store.group_channels("lobby")
    assert len(members) == 2, members  # alice's stays until group_expiry, like Redis

    carol = two.connect("lobby")
    _say(carol, "after the crash")
    assert _heard(bob) == {"text": "after the crash", "from_pid": two.proc.pid}
    assert _heard(carol) == {"text": "after the crash", "from_pid": two.proc.pid}

    three = servers()  # a restarted process joins the same groups
    dave = three.connect("lobby")
    _say(dave, "back again")
    for ws in (bob, carol, dave):
        assert _heard(ws) == {"text": "back again", "from_pid": three.proc.pid}
    for ws in (bob, carol, dave):
        ws.close()
