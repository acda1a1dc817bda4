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
