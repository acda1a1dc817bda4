"""The testing clients judge replies exactly as the server does (issue 14):
an invalid reply fails the test with the server's own message, instead of
passing in tests and failing (500, dropped frame) in production."""

from __future__ import annotations

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY

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


# --- More of WSClient's own behaviour, found unpinned by the mutation run of
# chanlite/testing/websocket.py: header lookups, the cookie refusal, who may
# log in and with which backend, logout ending the session server-side, the
# accept check's message, what connect()/disconnect() put in their messages.

MODEL = "django.contrib.auth.backends.ModelBackend"
ALLOW_ALL = "django.contrib.auth.backends.AllowAllUsersModelBackend"


def recording(seen, *replies):
    def consumer(message, **kwargs):
        seen.append((message.channel.name, dict(message.content)))
        for reply in replies:
            message.reply_channel.send(reply)
    return consumer


def test_headers_answer_names_case_insensitively_and_indexes_as_a_list(ws_client):
    ws_client.set_header("X-Token", "abc")
    headers = ws_client.headers
    assert headers[0] == [b"host", b"testserver"]
    assert headers[b"HOST"] == b"testserver" and headers["x-token"] == b"abc"
    assert "X-TOKEN" in headers and b"host" in headers and "cookie" not in headers
    assert [b"host", b"testserver"] in headers
    with pytest.raises(KeyError) as excinfo:
        headers["cookie"]
    assert excinfo.value.args == ("cookie",)


def test_set_header_refuses_cookies_saying_what_to_use(ws_client):
    with pytest.raises(ValueError) as excinfo:
        ws_client.set_header(b"Cookie", b"a=b")
    assert str(excinfo.value) == "use set_cookie(key, value) for cookies"


@pytest.mark.django_db
def test_login_refuses_an_inactive_user_even_if_a_backend_authenticates_it(ws_client, settings):
    from django.contrib.auth.models import User

    settings.AUTHENTICATION_BACKENDS = [ALLOW_ALL]
    User.objects.create_user("ina", password="pw", is_active=False)
    User.objects.create_user("act", password="pw")
    assert ws_client.login(username="ina", password="pw") is False
    assert ws_client.get_cookies() == {}, "a refused login must not create a session"
    assert ws_client.login(username="act", password="pw") is True
    assert ws_client.session[BACKEND_SESSION_KEY] == ALLOW_ALL


@pytest.mark.django_db
def test_force_login_uses_the_first_backend_or_the_one_given(ws_client, settings):
    from django.contrib.auth.models import User

    settings.AUTHENTICATION_BACKENDS = [MODEL, ALLOW_ALL]
    user = User.objects.create_user("fay")
    ws_client.force_login(user)
    assert ws_client.session[BACKEND_SESSION_KEY] == MODEL
    ws_client.logout()
    ws_client.force_login(user, backend=ALLOW_ALL)
    assert ws_client.session[BACKEND_SESSION_KEY] == ALLOW_ALL


@pytest.mark.django_db
def test_logout_ends_the_session_in_the_store(ws_client):
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    ws_client.force_login(User.objects.create_user("lou"))
    key = ws_client.session.session_key
    assert SessionStore().exists(key)
    ws_client.logout()
    assert not SessionStore().exists(key), "a stolen cookie would still log in as lou"


def test_connect_that_sends_nothing_fails_saying_what_the_server_would_do(ws_client, routes):
    routes([route("websocket.connect", lambda message: None)])
    with pytest.raises(AssertionError) as excinfo:
        ws_client.connect("/")
    assert str(excinfo.value) == (
        "the websocket.connect consumer sent nothing: the server would reject the handshake "
        "after its timeout; send {'accept': True}"
    )


def test_connect_and_disconnect_put_path_content_and_code_in_the_messages(ws_client, routes):
    seen = []
    routes([route("websocket.connect", recording(seen, {"accept": True})),
            route("websocket.disconnect", recording(seen))])
    ws_client.connect(subprotocols=["chat"])
    ws_client.disconnect()
    ws_client.connect("/room/")
    ws_client.disconnect(code=4001)
    summary = [(channel, c["path"], c.get("subprotocols"), c.get("code"), c["order"])
               for channel, c in seen]
    assert summary == [
        ("websocket.connect", "/", ["chat"], None, 0),
        ("websocket.disconnect", "/", None, 1000, 1),
        ("websocket.connect", "/room/", None, None, 0),
        ("websocket.disconnect", "/room/", None, 4001, 1),
    ]


def test_a_test_that_starts_mid_connection_still_gets_websocket_checks(ws_client, routes):
    """1.x tests often send websocket.receive without a connect: the client
    then judges replies as an open WebSocket (and numbers orders from 1)."""
    seen = []
    routes([route("websocket.receive", recording(seen, {"close": True}, {"text": "late"}))])
    ws_client.send_and_consume("websocket.receive", {"text": {"n": 1}})
    assert [(c["path"], c["order"], c["text"]) for _, c in seen] == [("/", 1, '{"n": 1}')]
    assert ws_client.receive() == {"close": True}
    with pytest.raises(AssertionError, match="after the connection was closed"):
        ws_client.receive()


def test_an_invalid_frame_mid_connection_fails_with_the_exact_message(ws_client, routes):
    routes([route("websocket.receive", replying({"txt": "x"}))])
    ws_client.send_and_consume("websocket.receive", text="hi")
    with pytest.raises(AssertionError) as excinfo:
        ws_client.receive()
    assert str(excinfo.value) == (
        f"invalid websocket reply on {ws_client.reply_channel}: {check_send({'txt': 'x'})} — "
        "the server logs this and drops the reply"
    )


def test_an_invalid_handshake_reply_fails_saying_the_server_refuses_it(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True, "txt": "x"}))])
    with pytest.raises(AssertionError) as excinfo:
        ws_client.connect("/")
    assert str(excinfo.value) == (
        f"invalid websocket reply on {ws_client.reply_channel}: "
        f"{check_send({'accept': True, 'txt': 'x'})} — "
        "the server logs this and refuses the handshake with 403"
    )


def test_replies_on_a_plain_channel_are_not_judged_as_websocket(ws_client, routes):
    routes([route("thumbnails", replying({"result": 1}))])
    ws_client.send_and_consume("thumbnails", {"n": 1})
    assert ws_client.receive() == {"result": 1}


def test_after_an_accepted_close_no_reply_is_delivered(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"close": 4000}, {"text": "late"}))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="x")
    assert ws_client.receive() == {"close": 4000}
    with pytest.raises(AssertionError, match="after the connection was closed"):
        ws_client.receive()


def test_an_invalid_http_response_fails_with_the_exact_message(http_client, routes):
    reply = {"content": b"no status"}
    routes([route("http.request", replying(reply))])
    http_client.send_and_consume("http.request", {"method": "GET"})
    with pytest.raises(AssertionError) as excinfo:
        http_client.receive()
    assert str(excinfo.value) == (
        f"invalid http.response on {http_client.reply_channel}: "
        f"{check_response(reply, started=False)} — the server answers 500 (or aborts a "
        "started response)"
    )


def test_ordered_client_refuses_an_explicit_order_saying_why(routes):
    from chanlite.testing import WSClient

    with pytest.raises(ValueError) as excinfo:
        WSClient(ordered=True).send("websocket.receive", {"order": 3})
    assert str(excinfo.value) == 'do not set "order" yourself on a WSClient(ordered=True)'


def test_an_explicit_order_does_not_advance_the_clients_counter(ws_client, routes):
    seen = []
    routes([route("websocket.connect", recording(seen, {"accept": True})),
            route("websocket.receive", recording(seen))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", {"order": 5, "text": "x"})
    ws_client.send_and_consume("websocket.receive", text="y")
    assert [c["order"] for _, c in seen] == [0, 5, 1]


def test_consume_checks_the_accept_by_default_and_only_when_a_consumer_ran(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"close": True}))])
    ws_client.connect("/")
    # Nothing queued: no consumer ran, so there is no accept to check.
    assert ws_client.consume("websocket.connect", fail_on_none=False) is None
    routes([route("websocket.connect", replying({"close": True}))])
    ws_client.send("websocket.connect", path="/")
    with pytest.raises(AssertionError, match="the connection was rejected"):
        ws_client.consume("websocket.connect")


def test_send_and_consume_passes_fail_on_none(ws_client, routes):
    routes([route("websocket.connect", replying({"accept": True}))])
    assert ws_client.send_and_consume("unrouted", {"n": 1}, fail_on_none=False) is None
    with pytest.raises(AssertionError, match="no route matches"):
        ws_client.send_and_consume("unrouted", {"n": 2})


def test_client_arguments_reach_the_base_client(channel_layer):
    from chanlite.testing import WSClient

    assert WSClient("other").alias == "other"
    client = WSClient(reply_channel="daphne.response.1", host="example.com")
    assert (client.reply_channel, client.headers["host"]) == ("daphne.response.1", b"example.com")


def test_after_the_accept_a_late_accept_false_rejects_nothing(ws_client, routes):
    """``accept`` only acts on a pending handshake (``handshake_action``):
    once accepted, ``{"accept": False}`` does not close the connection, so
    later frames are still delivered, as the server does."""
    routes([route("websocket.connect", replying({"accept": True})),
            route("websocket.receive", replying({"accept": False}, {"text": '"still open"'}))])
    ws_client.connect("/")
    ws_client.send_and_consume("websocket.receive", text="x")
    assert ws_client.receive() == {"accept": False}
    assert ws_client.receive() == "still open"
