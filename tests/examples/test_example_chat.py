"""The chat example at the protocol level (no browser): auth, streams, long-poll,
and the documented one-host deployment (IPC layer, ``chanlite serve`` plus a
separate ``runworker``).

tests/examples/test_e2e_browser.py proves the page works in Chromium; these prove the
server side on machines without a browser, and the multi-process setup that
docs/deployment.md tells users to run.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import websocket

from chanlite.layers.ipc import remove_prefix

from .chat_example import ChatDeployment, ChatServer, login

WAIT = 15.0  # every wait is bounded by this


def ws_open(url: str, room: str, cookie: str | None) -> websocket.WebSocket:
    parts = urlsplit(url)
    return websocket.create_connection(f"ws://{parts.netloc}/chat/{room}/stream/",
                                       cookie=cookie, timeout=WAIT,
                                       origin=f"http://{parts.netloc}")


def frames_until(ws: websocket.WebSocket, want: Callable[[dict], bool], what: str) -> dict:
    """Read multiplexed frames until one satisfies ``want`` (bounded)."""
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv())
        if want(frame):
            return frame
        seen.append(frame)
    pytest.fail(f"no frame for {what} within {WAIT}s; got {seen}")


def is_message(text: str) -> Callable[[dict], bool]:
    return lambda f: (f["stream"] == "messages" and f["payload"]["type"] == "message"
                      and f["payload"]["message"]["text"] == text)


def is_presence(users: list[str]) -> Callable[[dict], bool]:
    return lambda f: f["stream"] == "presence" and f["payload"]["users"] == users


def poll(url: str, room: str, cookie: str, after: int = 0) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        conn.request("GET", f"/chat/{room}/poll/?after={after}", headers={"Cookie": cookie})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path_factory.mktemp("chat-protocol"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_anonymous_websocket_is_refused(chat: ChatServer) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws_open(chat.url, "lobby", cookie=None)
    assert refused.value.status_code == 403


def test_anonymous_long_poll_is_refused(chat: ChatServer) -> None:
    status, body = poll(chat.url, "lobby", cookie="")
    assert status == 403 and "log in" in body["error"]


def test_streams_moderation_and_long_poll_wake_up(chat: ChatServer) -> None:
    room = "p-" + uuid.uuid4().hex[:8]
    alice, bob = login(chat.url, "alice"), login(chat.url, "bob")
    ws = ws_open(chat.url, room, alice)
    try:
        history = frames_until(ws, lambda f: f["payload"]["type"] == "history", "history")
        assert history["payload"]["messages"] == []
        frames_until(ws, is_presence(["alice"]), "alice's own presence")

        # Bob long-polls an empty room: the request parks until a message.
        result: dict = {}
        parked = threading.Thread(target=lambda: result.update(r=poll(chat.url, room, bob)))
        parked.start()
        # (Whether it is parked yet or not when alice sends, bob must get the
        # message: woken by the group, or straight from the database.)
        ws.send(json.dumps({"stream": "messages", "payload": {"text": "what the heck"}}))
        line = frames_until(ws, is_message("what the ****"), "the moderated echo")
        assert line["payload"]["message"]["moderated"] is True
        parked.join(WAIT)
        assert not parked.is_alive(), "the parked long-poll was not answered"
        status, woke = result["r"]
        assert status == 200
        # Either woken (then the re-poll reads the DB) or it read the message directly.
        if woke.get("wake"):
            status, woke = poll(chat.url, room, bob)
        assert [m["text"] for m in woke["messages"]] == ["what the ****"]
        last = woke["messages"][-1]["id"]

        # Catching up: a message sent while nobody polls is there on the next poll.
        ws.send(json.dumps({"stream": "messages", "payload": {"text": "second"}}))
        frames_until(ws, is_message("second"), "the second message")
        status, later = poll(chat.url, room, bob, after=last)
        assert status == 200 and [m["text"] for m in later["messages"]] == ["second"]
    finally:
        ws.close()


def test_reminder_is_a_delayed_message(chat: ChatServer) -> None:
    parts = urlsplit(chat.url)
    ws = websocket.create_connection(f"ws://{parts.netloc}/chat/lobby/reminders/",
                                     cookie=login(chat.url, "alice"), timeout=WAIT,
                                     origin=f"http://{parts.netloc}")
    try:
        ws.send(json.dumps({"text": "tea", "seconds": 0}))
        assert json.loads(ws.recv())["type"] == "error"
        ws.send(json.dumps({"text": "tea", "seconds": 1}))
        set_at = time.monotonic()
        assert json.loads(ws.recv()) == {"type": "set", "text": "tea", "seconds": 1}
        assert json.loads(ws.recv()) == {"type": "reminder", "text": "tea"}
        assert time.monotonic() - set_at >= 0.75, "the reminder came before its delay"
    finally:
        ws.close()


@pytest.fixture
def deployment(tmp_path) -> Iterator[ChatDeployment]:
    prefix = f"chatt{os.getpid()}{secrets.token_hex(3)}"
    setup = ChatDeployment(tmp_path, prefix)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()
        remove_prefix(prefix)
        left = [n for n in os.listdir("/dev/shm") if f"chanlite.{prefix}" in n]
        assert not left, f"IPC segments left behind: {left}"


def test_ipc_layer_with_runworker_behind_chanlite_serve(deployment: ChatDeployment) -> None:
    """Consumers run only in the runworker process: everything crosses the IPC layer."""
    url = deployment.url
    room = "ipc-" + uuid.uuid4().hex[:8]
    a = ws_open(url, room, login(url, "alice"))
    try:
        frames_until(a, is_presence(["alice"]), "alice's presence")
        b = ws_open(url, room, login(url, "bob"))
        try:
            frames_until(a, is_presence(["alice", "bob"]), "bob joining, seen by alice")
            b.send(json.dumps({"stream": "messages", "payload": {"text": "over ipc, darn"}}))
            frames_until(a, is_message("over ipc, ****"), "bob's moderated message at alice")
        finally:
            b.close()
        frames_until(a, is_presence(["alice"]), "bob leaving, seen by alice")
    finally:
        a.close()
