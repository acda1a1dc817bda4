"""WSGI header values with surrounding whitespace (Django's Set-Cookie) are served.

Django's WSGIHandler builds ``("Set-Cookie", cookie.output(header=""))``,
whose value starts with a space; the server must send the cookie instead of
answering 500, or no login (and so no session-authenticated WebSocket) works.
"""

from __future__ import annotations

from .server_fixtures import http_request


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Set-Cookie", " sessionid=abc; Path=/; HttpOnly"),
                              ("X-Padded", "\tvalue  ")])
    return [b"ok"]


def test_leading_space_in_header_value_is_stripped(chanlite_server):
    server = chanlite_server(workers=0, wsgi_app=_app)
    status, headers, body = http_request(server, "GET", "/")
    assert (status, body) == (200, b"ok")
    assert headers["set-cookie"] == "sessionid=abc; Path=/; HttpOnly"
    assert headers["x-padded"] == "value"


# --- The WSGI bridge's responses through the live server (issue 20: the
# mutation run of server/http_wsgi.py found streamed bodies, reason phrases
# and the failure answer unpinned).

#: Chunks large enough that the pool streams them (it gathers small bodies
#: into one write) in several writes, the last one small.
STREAMED = [bytes([65 + i]) * 100_000 for i in range(4)] + [b"end"]


def _streamed(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])  # no length: streamed
    return iter(STREAMED)


def _reason(environ, start_response):
    start_response("299 Custom Reason", [("Content-Length", "2")])
    return [b"ok"]


def _fails_before_start(environ, start_response):
    raise RuntimeError("the view broke")


def test_a_streamed_wsgi_body_arrives_whole_and_in_order(chanlite_server):  # noqa: F811
    server = chanlite_server(workers=0, wsgi_app=_streamed)
    status, headers, body = http_request(server, "GET", "/")
    assert status == 200
    assert body == b"".join(STREAMED), f"{len(body)} bytes, expected {len(b''.join(STREAMED))}"


def test_a_wsgi_status_line_keeps_its_reason_phrase(chanlite_server):  # noqa: F811
    import http.client

    server = chanlite_server(workers=0, wsgi_app=_reason)
    conn = http.client.HTTPConnection(*server.address[:2], timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.reason, response.read()) == (299, "Custom Reason", b"ok")
    finally:
        conn.close()


def test_a_wsgi_app_that_fails_before_responding_gets_a_plain_500(chanlite_server):  # noqa: F811
    server = chanlite_server(workers=0, wsgi_app=_fails_before_start)
    status, headers, body = http_request(server, "GET", "/")
    expected = (500, "text/plain", b"Internal Server Error\n")
    assert (status, headers["content-type"], body) == expected


def _bad_status(environ, start_response):
    start_response("abc OK", [("Content-Length", "2")])
    return [b"ok"]


def _unencodable_header(environ, start_response):
    start_response("200 OK", [("X-Name", "\u20ac"), ("Content-Length", "2")])
    return [b"ok"]


def test_an_invalid_wsgi_status_is_answered_500_closed_and_logged(chanlite_server, caplog):  # noqa: F811
    import logging

    caplog.set_level(logging.ERROR, logger="chanlite.server")
    server = chanlite_server(workers=0, wsgi_app=_bad_status)
    status, headers, body = http_request(server, "GET", "/bad")
    assert (status, headers["connection"], body) == (
        500, "close", b"500 Internal Server Error\ninvalid response\n")
    messages = [r.getMessage() for r in caplog.records if r.name == "chanlite.server"]
    assert any(m.startswith("invalid WSGI response for /bad: invalid literal for int()")
               for m in messages), messages


def test_a_header_the_server_cannot_encode_gets_a_plain_500(chanlite_server):  # noqa: F811
    import http.client

    server = chanlite_server(workers=0, wsgi_app=_unencodable_header)
    conn = http.client.HTTPConnection(*server.address[:2], timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.reason, response.getheader("content-type"),
                response.read()) == (500, "Internal Server Error", "text/plain",
                                     b"Internal Server Error\n")
    finally:
        conn.close()
