"""The chat example's live room list (a data binding of Room) at the protocol
level, without a browser: on ``runserver`` (in-memory layer) and on the
documented one-host deployment, where the Room is saved in the ``runworker``
process and the binding's message crosses the IPC layer to the server.

tests/examples/test_e2e_browser.py shows the same list in Chromium, renamed in the admin.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import websocket

from chanlite.layers.ipc import remove_prefix

from .chat_example import ChatDeployment, ChatServer, login

WAIT = 15.0


def open_socket(url: str, path: str, cookie: str | None) -> websocket.WebSocket:
    netloc = urlsplit(url).netloc
    return websocket.create_connection(f"ws://{netloc}{path}", cookie=cookie, timeout=WAIT,
                                       origin=f"http://{netloc}")


def room_frames_until(ws: websocket.WebSocket, want: Callable[[dict], bool], what: str) -> dict:
    """Read ``rooms`` stream payloads until one satisfies ``want`` (bounded)."""
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv())
        if frame["stream"] == "rooms" and want(frame["payload"]):
            return frame["payload"]
        seen.append(frame)
    pytest.fail(f"no rooms frame for {what} within {WAIT}s; got {seen}")


def check_room_list(url: str) -> None:
    alice = login(url, "alice")
    rooms = open_socket(url, "/rooms/stream/", alice)
    try:
        snapshot = room_frames_until(rooms, lambda p: p["action"] == "list", "the snapshot")
        assert isinstance(snapshot["rooms"], list)
        room = "rl-" + uuid.uuid4().hex[:8]
        visitor = open_socket(url, f"/chat/{room}/stream/", login(url, "bob"))
        try:  # a first visit creates the Room (presence), which the binding announces
            created = room_frames_until(rooms, lambda p: p.get("pk") == room,
                                        f"room {room} to be announced")
            assert (created["action"], created["model"], created["data"]) == (
                "create", "chat.room", {"title": ""})
        finally:
            visitor.close()
    finally:
        rooms.close()


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path_factory.mktemp("chat-binding"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_room_list_refuses_anonymous_sockets(chat: ChatServer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_socket(chat.url, "/rooms/stream/", cookie=None)
    assert refused.value.status_code == 403


def test_room_list_on_runserver(chat: ChatServer) -> None:
    check_room_list(chat.url)


def test_room_list_across_the_ipc_layer(tmp_path) -> None:
    """The Room is saved in the runworker process; the binding's group send
    crosses the IPC layer to the server process holding alice's socket."""
    prefix = f"chatb{os.getpid()}{secrets.token_hex(3)}"
    setup = ChatDeployment(tmp_path, prefix)
    try:
        setup.start()
        check_room_list(setup.url)
    finally:
        setup.stop()
        remove_prefix(prefix)
