"""``chanlite.handler`` written the way Channels 1.x tests used ``channels.handler``:
AsgiHandler turning responses into messages, AsgiRequest decoding messages,
ViewConsumer running views from the routing.

The end-to-end proof (a request through the real server, answered by a view in
a ``runworker`` process on the IPC layer) is tests/compat/test_handler_e2e.py.
"""

from __future__ import annotations

import json
import logging
from io import BytesIO

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import override_settings

from chanlite import Channel
from chanlite.exceptions import RequestAborted, RequestTimeout
from chanlite.handler import AsgiHandler, AsgiRequest, ViewConsumer
from chanlite.message import Message
from chanlite.routing import route
from chanlite.testing import ChannelTestCase, Client, apply_routes

REQUEST = {"reply_channel": "test", "http_version": "1.1", "method": "GET", "path": b"/test/"}


class FakeAsgiHandler(AsgiHandler):
    """Returns a premade response instead of going into the view system."""

    chunk_size = 30

    def __init__(self, response):
        self._response = response
        super().__init__()

    def get_response(self, request):
        return self._response


class HandlerTests(ChannelTestCase):
    """AsgiHandler round-trips responses into correct http.response messages."""

    def replies(self, response, **extra):
        Channel("test").send({**REQUEST, **extra})
        return list(FakeAsgiHandler(response)(self.get_next_message("test", require=True)))

    def test_basic(self):
        reply_messages = self.replies(HttpResponse(b"Hi there!", content_type="text/plain"))
        self.assertEqual(len(reply_messages), 1)
        reply = reply_messages[0]
        self.assertEqual(reply["content"], b"Hi there!")
        self.assertEqual(reply["status"], 200)
        self.assertEqual(reply.get("more_content", False), False)
        # [name, value] lists (1.x yielded tuples, which the layers' codec refuses).
        self.assertEqual(reply["headers"], [[b"Content-Type", b"text/plain"]])

    def test_large(self):
        reply_messages = self.replies(HttpResponse(b"Thefirstthirtybytesisrighthereandhereistherest"))
        self.assertEqual(len(reply_messages), 2)
        self.assertEqual(reply_messages[0]["content"], b"Thefirstthirtybytesisrighthere")
        self.assertEqual(reply_messages[0]["status"], 200)
        self.assertEqual(reply_messages[0]["more_content"], True)
        self.assertEqual(reply_messages[1], {"content": b"andhereistherest", "more_content": False})

    def test_chunk_bytes(self):
        self.assertEqual(list(FakeAsgiHandler.chunk_bytes(b"")), [(b"", True)])
        below = b"12345678901234567890123456789"
        self.assertEqual(list(FakeAsgiHandler.chunk_bytes(below)), [(below, True)])
        exact = b"123456789012345678901234567890"
        self.assertEqual(list(FakeAsgiHandler.chunk_bytes(exact)), [(exact, True)])
        self.assertEqual(list(FakeAsgiHandler.chunk_bytes(exact + b"a")),
                         [(exact, False), (b"a", True)])

    def test_iterator(self):
        reply_messages = self.replies(HttpResponse(range(10)))
        self.assertEqual(len(reply_messages), 1)
        self.assertEqual(reply_messages[0]["content"], b"0123456789")

    def test_streaming_data(self):
        reply_messages = self.replies(StreamingHttpResponse(f"Line: {i}" for i in range(10)))
        self.assertEqual(len(reply_messages), 11)
        self.assertEqual(reply_messages[0]["content"], b"Line: 0")
        self.assertEqual(reply_messages[0]["status"], 200)
        self.assertEqual(reply_messages[9]["content"], b"Line: 9")
        self.assertTrue(all(m["more_content"] for m in reply_messages[:10]))
        self.assertEqual(reply_messages[10], {"more_content": False})

    def test_streaming_parts_larger_than_a_chunk_are_split(self):
        reply_messages = self.replies(StreamingHttpResponse([b"a" * 70]))
        self.assertEqual([len(m.get("content", b"")) for m in reply_messages], [30, 30, 10, 0])

    def test_bytes_file_response(self):
        reply_messages = self.replies(FileResponse(BytesIO(b"sadfdasfsdfsadf")))
        self.assertEqual(len(reply_messages), 2)
        self.assertEqual(reply_messages[0]["content"], b"sadfdasfsdfsadf")
        self.assertEqual(reply_messages[1], {"more_content": False})

    def test_file_response_is_read_in_chunk_size_blocks(self):
        response = FileResponse(BytesIO(b"z" * 100))
        reply_messages = self.replies(response)
        self.assertEqual(response.block_size, 30)
        self.assertEqual([len(m.get("content", b"")) for m in reply_messages], [30, 30, 30, 10, 0])

    def test_unclosable_filelike_object(self):
        class Unclosable:
            def read(self, n=-1):
                return b""

        reply_messages = self.replies(FileResponse(Unclosable()))
        self.assertEqual(len(reply_messages), 1)

    def test_cookies_become_set_cookie_headers(self):
        response = HttpResponse(b"ok")
        response.set_cookie("flavour", "oat")
        headers = dict(self.replies(response)[0]["headers"])
        self.assertTrue(headers[b"Set-Cookie"].startswith(b"flavour=oat;"), headers)


class RequestTests(ChannelTestCase):
    """AsgiRequest decodes http.request (and http.request.body) messages."""

    def request(self, **content):
        content = {"reply_channel": "test-reply", "http_version": "1.1", "method": "GET",
                   "path": "/test/", **content}
        Channel("test").send(content)
        return AsgiRequest(self.get_next_message("test", require=True))

    def test_basic(self):
        request = self.request(query_string=b"x=1&y=%C3%A9", client=["10.0.0.1", 4321],
                               server=["10.0.0.2", 80], headers=[[b"user-agent", b"tester"],
                                                                 [b"x-dup", b"a"], [b"x-dup", b"b"]])
        self.assertEqual(request.path, "/test/")
        self.assertEqual(request.path_info, "/test/")
        self.assertEqual(request.method, "GET")
        self.assertEqual(request.GET["x"], "1")
        self.assertEqual(request.GET["y"], "é")
        self.assertEqual(request.META["QUERY_STRING"], "x=1&y=%C3%A9")
        self.assertEqual(request.META["REMOTE_ADDR"], "10.0.0.1")
        self.assertEqual(request.META["REMOTE_PORT"], 4321)
        self.assertEqual(request.META["SERVER_NAME"], "10.0.0.2")
        self.assertEqual(request.META["SERVER_PORT"], "80")
        self.assertEqual(request.META["HTTP_USER_AGENT"], "tester")
        self.assertEqual(request.META["HTTP_X_DUP"], "a,b")
        self.assertEqual(request.body, b"")
        self.assertEqual(request.reply_channel.name, "test-reply")

    def test_no_server_means_unknown(self):
        request = self.request()
        self.assertEqual((request.META["SERVER_NAME"], request.META["SERVER_PORT"]), ("unknown", "0"))

    def test_old_style_dict_headers(self):
        request = self.request(headers={"cookie": b"a=1; b=2", "host": b"example.com"})
        self.assertEqual(request.COOKIES, {"a": "1", "b": "2"})
        self.assertEqual(request.META["HTTP_HOST"], "example.com")

    def test_post_form(self):
        body = b"title=Hello&text=World"
        request = self.request(method="POST", body=body, headers=[
            [b"content-type", b"application/x-www-form-urlencoded"],
            [b"content-length", str(len(body)).encode()]])
        self.assertEqual(request.POST.dict(), {"title": "Hello", "text": "World"})
        self.assertEqual(request.content_type, "application/x-www-form-urlencoded")

    def test_multipart_upload(self):
        body = (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nMy file\r\n"
                b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"pic\"; filename=\"x.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\nFAKEDATA\r\n--BOUNDARY--\r\n")
        request = self.request(method="POST", body=body, headers=[
            [b"content-type", b"multipart/form-data; boundary=BOUNDARY"],
            [b"content-length", str(len(body)).encode()]])
        self.assertEqual(request.POST["title"], "My file")
        self.assertEqual(request.FILES["pic"].read(), b"FAKEDATA")

    def test_body_chunks_from_the_body_channel(self):
        layer = self.channel_layer
        body_channel = layer.new_channel("http.request.body?")
        Channel(body_channel).send({"content": b"second ", "more_content": True})
        Channel(body_channel).send({"content": b"third", "more_content": False})
        request = self.request(method="PUT", body=b"first ", body_channel=body_channel)
        self.assertEqual(request.body, b"first second third")
        # A chunked body has no Content-Length header: the request supplies one.
        self.assertEqual(request.META["CONTENT_LENGTH"], str(len(request.body)))

    def test_closed_body_channel_aborts(self):
        body_channel = self.channel_layer.new_channel("http.request.body?")
        Channel(body_channel).send({"content": b"", "closed": True})
        with self.assertRaises(RequestAborted):
            self.request(method="POST", body=b"part", body_channel=body_channel)

    def test_body_that_never_arrives_times_out(self):
        body_channel = self.channel_layer.new_channel("http.request.body?")
        Channel("test").send({"reply_channel": "r", "http_version": "1.1", "method": "POST",
                              "path": "/", "body": b"part", "body_channel": body_channel})

        class QuickRequest(AsgiRequest):
            body_receive_timeout = 0.05

        with self.assertRaises(RequestTimeout):
            QuickRequest(self.get_next_message("test", require=True))

    def test_root_path(self):
        # Mounted under /app: path with the prefix (Daphne 1.x) or without (chanlite).
        for path in ("/app/test/", "/test/"):
            request = self.request(path=path, root_path="/app")
            self.assertEqual((request.path, request.path_info, request.META["SCRIPT_NAME"]),
                             ("/app/test/", "/test/", "/app"))

    def test_scheme(self):
        self.assertEqual(self.request().scheme, "http")
        self.assertEqual(self.request(scheme="https").scheme, "https")


def http_request(test_client, path, **content):
    test_client.send_and_consume("http.request", {
        "http_version": "1.1", "method": "GET", "path": path, "query_string": b"",
        "headers": [[b"host", b"testserver"]], **content})
    return test_client.receive_all()


@override_settings(ROOT_URLCONF="tests.compat.handler_urls")
class ViewConsumerTests(ChannelTestCase):
    """Views routed by ``route("http.request", "chanlite.handler.ViewConsumer")``."""

    routes = [route("http.request", "chanlite.handler.ViewConsumer")]

    def test_view_by_dotted_path(self):
        with apply_routes(self.routes):
            replies = http_request(Client(), "/hello/")
        self.assertEqual(len(replies), 1)
        self.assertEqual(replies[0]["status"], 200)
        self.assertEqual(replies[0]["content"], b"Hello, world")
        self.assertFalse(replies[0]["more_content"])

    def test_instance_as_consumer(self):
        """1.x's own default route was ``Route("http.request", ViewConsumer())``."""
        with apply_routes([route("http.request", ViewConsumer())]):
            replies = http_request(Client(), "/hello/")
        self.assertEqual(replies[0]["content"], b"Hello, world")

    def test_not_found(self):
        with apply_routes(self.routes):
            replies = http_request(Client(), "/nowhere/")
        self.assertEqual(replies[0]["status"], 404)

    def test_failing_view_is_a_500(self):
        with apply_routes(self.routes), self.assertLogs("django.request", logging.ERROR):
            replies = http_request(Client(), "/broken/")
        self.assertEqual(replies[0]["status"], 500)

    def test_response_later_sends_nothing(self):
        with apply_routes(self.routes):
            self.assertEqual(http_request(Client(), "/later/"), [])

    def test_view_sees_the_request(self):
        body = b"a=1&b=two"
        with apply_routes(self.routes):
            replies = http_request(Client(), "/echo/", method="POST", body=body,
                                   query_string=b"q=search",
                                   headers=[[b"host", b"testserver"],
                                            [b"content-type", b"application/x-www-form-urlencoded"],
                                            [b"content-length", str(len(body)).encode()],
                                            [b"cookie", b"k=v"]],
                                   client=["192.0.2.7", 5000])
        seen = json.loads(replies[0]["content"])
        self.assertEqual(seen["post"], {"a": "1", "b": "two"})
        self.assertEqual(seen["get"], {"q": "search"})
        self.assertEqual(seen["cookies"], {"k": "v"})
        self.assertEqual(seen["remote_addr"], "192.0.2.7")

    def test_streaming_view_is_chunked(self):
        with apply_routes(self.routes):
            replies = http_request(Client(), "/stream/", query_string=b"n=3")
        self.assertEqual(replies[0]["status"], 200)
        self.assertEqual(b"".join(r.get("content", b"") for r in replies), b"line 0\nline 1\nline 2\n")
        self.assertEqual([r["more_content"] for r in replies], [True, True, True, False])

    def test_chunks_fit_the_layers_message_size(self):
        """A 100 kB body on a layer whose messages hold 40 kB goes out in
        pieces of half that, none refused as too large."""
        self.channel_layer.max_message_size = 40_000
        with apply_routes(self.routes):
            replies = http_request(Client(), "/big/", query_string=b"size=100000")
        self.assertEqual([len(r["content"]) for r in replies], [20_000] * 5)
        self.assertEqual(b"".join(r["content"] for r in replies), b"x" * 100_000)
        self.assertEqual([r["more_content"] for r in replies], [True] * 4 + [False])

    def test_message_without_reply_channel_is_refused(self):
        message = Message({"path": "/hello/", "method": "GET"}, "http.request", self.channel_layer)
        with self.assertRaisesRegex(ValueError, "without a reply_channel"):
            ViewConsumer(message)

    def test_failing_stream_is_ended_and_the_error_raised(self):
        client = Client()
        with apply_routes(self.routes), self.assertRaisesRegex(RuntimeError, "on purpose"):
            client.send_and_consume("http.request", {
                "http_version": "1.1", "method": "GET", "path": "/stream-fail/",
                "headers": [[b"host", b"testserver"]]})
        replies = client.receive_all()
        self.assertEqual(replies[0]["content"], b"first\n")
        self.assertEqual(replies[-1], {"content": b"", "more_content": False})

    def test_full_reply_channel_abandons_the_response(self):
        """A client that stops reading: after send_timeout the worker gives
        up with a log line instead of blocking forever (1.x looped)."""
        from chanlite.layers.memory import InMemoryChannelLayer

        class QuickViewConsumer(ViewConsumer):
            send_timeout = 0.1

        layer = InMemoryChannelLayer(process_capacity=2, max_message_size=4096)
        client = Client(channel_layer=layer, routing=[route("http.request", QuickViewConsumer)])
        with self.assertLogs("chanlite.handler", logging.ERROR) as logs:
            replies = http_request(client, "/big/", query_string=b"size=20000")
        self.assertIn("still full", logs.output[0])
        self.assertEqual(len(replies), 2)  # what fitted; the rest was dropped
