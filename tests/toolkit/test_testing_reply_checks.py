"""The testing clients judge replies exactly as the server does (issue 14):
an invalid reply fails the test with the server's own message, instead of
passing in tests and failing (500, dropped frame) in production."""

from __future__ import annotations

import pytest

from chanlite.routing import route
from chanlite.server.http import check_response
from chanlite.server.websocket import check_send


def replying(*replies):
    def consumer(message, **kwargs):
        for reply in replies:
            message.reply_channel.send(reply)
    return consumer


@pytest.mark.parametrize(
    "reply",
    [{"txt": "x"}, {"text": b"not str"}, {"bytes": "not bytes"}, {"text": "a", "bytes": b"b"},
     {"close": 999}],
)
def test_invalid_websocket_frame_fails_with_the_server_message(ws_client, routes, reply):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying(reply))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="hi")
    with pytest.raises(AssertionError) as failure:
        ws_client.receive()
    # Word for word what the server logs before dropping the reply.
    assert check_send(reply) in str(failure.value)


def test_invalid_handshake_reply_fails_the_connect(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True, "txt": "hello"}))])
    with pytest.raises(AssertionError, match=r"unknown keys \['txt'\]"):
        ws_client.connect("/")


def test_reply_after_close_is_never_delivered(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"close": True}, {"accept": True}))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="bye")
    assert ws_client.receive() == {"close": True}
    with pytest.raises(AssertionError, match="after the connection was closed"):
        ws_client.receive()


def test_reply_after_rejection_is_never_delivered(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": False}, {"text": "late"}))])
    ws_client.connect("/", check_accept=False)
    assert ws_client.receive() == {"accept": False}
    with pytest.raises(AssertionError, match="after the connection was closed"):
        ws_client.receive()


def test_valid_replies_still_pass(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"text": '{"a": 1}'}, {"bytes": b"x"},
                                                {"text": "bye", "close": 4000}))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="hi")
    assert ws_client.receive() == {"a": 1}
    assert ws_client.receive() == {"bytes": b"x"}
    assert ws_client.receive(json=False) == "bye"


def test_http_response_without_status_fails_with_the_server_message(http_client, routes):
    routes([route("http.request", replying({"content": b"no status"}))])
    with pytest.raises(AssertionError) as failure:
        http_client.get("/")
    assert check_response({"content": b"no status"}, started=False) in str(failure.value)
    assert "500" in str(failure.value)


@pytest.mark.parametrize(
    "reply, error",
    [({"status": "200"}, "'status' must be an int"),
     ({"status": 200, "headers": [[b"x-a"]]}, "pair"),
     ({"status": 200, "headers": [[b"x-a", 1]]}, "must be bytes"),
     ({"status": 200, "content": "text"}, "'content' must be bytes")],
)
def test_invalid_http_response_fails(http_client, routes, reply, error):
    routes([route("http.request", replying(reply))])
    with pytest.raises(AssertionError, match=error):
        http_client.get("/")


def test_http_chunk_after_the_end_is_never_delivered(http_client, routes):
    routes([route("http.request", replying({"status": 200, "content": b"a"},
                                           {"content": b"b"}))])
    response = http_client.get("/")
    assert response.content == b"a"
    with pytest.raises(AssertionError, match="after the response was complete"):
        http_client.receive()


def test_str_headers_are_accepted_as_by_the_server(http_client, routes):
    routes([route("http.request", replying({"status": 200, "headers": [["x-a", "b"]],
                                            "content": b"ok"}))])
    assert http_client.get("/").header("x-a") == b"b"


# --- WSClient's own behaviour (issue 20: each test kills a mutant that survived)

def test_receive_of_text_that_is_not_json_fails_pointing_at_json_false(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"text": "plain words"}))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="hi")
    with pytest.raises(AssertionError, match=r"not JSON: 'plain words'.*receive\(json=False\)"):
        ws_client.receive()


@pytest.mark.parametrize(
    "handshake_reply, kept",
    [({"accept": True, "text": "welcome"}, {"text": "welcome"}),  # frame sent with accept
     ({"text": "welcome"}, {"text": "welcome"}),  # a frame accepts implicitly
     ({"bytes": b"\x00hi"}, {"bytes": b"\x00hi"}),
     ({"accept": True, "text": "bye", "close": 4001}, {"text": "bye", "close": 4001})],
)
def test_frame_in_the_handshake_reply_is_kept_for_receive(ws_client, routes, handshake_reply,
                                                           kept):
    routes([route("websocket.connect", replying(handshake_reply))])
    ws_client.connect("/")  # the accept check reads the reply...
    # ...and hands its frame on, exactly once, without the accept key.
    assert ws_client.receive(json=False) == (kept["text"] if "text" in kept else kept)
    assert ws_client.receive() is None


def test_handshake_frame_comes_before_later_replies(ws_client, routes):
    routes([route("websocket.connect", replying({"text": "1"}, {"text": "2"}))])
    ws_client.connect("/")
    assert [ws_client.receive(), ws_client.receive(), ws_client.receive()] == [1, 2, None]
