"""HTTP requests of one connection: to a consumer through the layer, or to WSGI.

Runs on the I/O loop. For each request the :class:`HTTPSession` asks the
server whether the routing has an ``http.request`` route for the path; if
so the request becomes an ``http.request`` message (large bodies continue on
a ``body_channel``) and the session waits - holding no thread - for
``http.response`` messages on the request's reply channel, which the reply
pump delivers. This is also how long-poll works: the consumer adds the
reply channel to a group and returns, and the response is written whenever
a group message arrives (or ``504`` after ``http_response_timeout``).
Every other request is handed to the WSGI pool (Django views); the pool's
responses come back through the methods of ``http_wsgi.py``, always called
on the loop: a pool thread only reads ``gone`` (a hint to stop early) and
never writes session state. The server is reached only through
:class:`~chanlite.server.host.SessionHost`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import h11

from ..layers.base import ChannelFull, MessageTooLarge
from .bodies import SpooledBody
from .deadline import Deadline
from .http import (
    Body,
    Disconnected,
    EndOfBody,
    HTTPCore,
    Reject,
    RequestHead,
    asgi_request,
    check_response,
    client_text,
    error_response,
    response_headers,
)
from .http_wsgi import _WSGIResponses
from .proxy import apply_proxy_headers
from .ws_session import WebSocketSession

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection

__all__ = ["HTTPSession"]

log = logging.getLogger("chanlite.server")
_PIPELINE_LIMIT = 256 * 1024  # buffered unread bytes before we stop reading


class HTTPSession(_WSGIResponses):
    """The HTTP side of one connection (one request at a time, in order)."""

    __slots__ = (
        "conn", "host", "core", "head", "route", "reply_channel", "body_parts", "body_size",
        "body_channel", "status", "sent", "started_at", "gone", "saw_bytes",
        "deadline", "body", "body_held", "body_deadline",
        "answered", "outbox",
    )

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.host = conn.host
        config = self.host.config
        self.core = HTTPCore(config.max_header_size, config.max_request_body)
        # One re-armable deadline: header, body, response or keep-alive timeout.
        self.deadline = Deadline(self.host.loop, conn, time.monotonic)
        # Set on the loop when the connection is gone; WSGI pool threads
        # only read it (to stop producing a response nobody will read).
        self.gone = False
        self._wsgi_drained = None  # a slot of _WSGIResponses
        self.body: SpooledBody | None = None  # a WSGI request's body, until submitted
        self.body_held = 0  # bytes of body_parts taken from the server's body_memory
        # (reply_channel, path) of consumer requests answered on this connection:
        # they get http.disconnect when it closes (Daphne 1.x did).
        self.answered: list[tuple[str, str]] = []
        # Messages to the layer, in order; waits (not drops) when a channel is full.
        self.outbox = self.host.outbox(self)
        self._reset()
        self.deadline.set(config.header_timeout, self._header_timeout)

    def _reset(self) -> None:
        self._release_body()
        self.body_deadline = 0.0
        self.head: RequestHead | None = None
        self.route = ""
        self.reply_channel = ""
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.body_channel = ""
        self.status = 0
        self.sent = 0
        self.started_at = 0.0
        self.saw_bytes = False

    # ------------------------------------------------------------- timers

    def _release_body(self) -> None:
        """Give back the body memory this request holds (and its spool file)."""
        self.host.body_memory.give(self.body_held)
        self.body_held = 0
        if self.body is not None:
            self.body.close()
            self.body = None

    def _arm_body_timer(self) -> None:
        """The body must keep coming (``body_idle_timeout`` between bytes) and
        end in time (``body_timeout`` after the head); 0 turns either off."""
        config = self.host.config
        delays = [config.body_idle_timeout] if config.body_idle_timeout else []
        if config.body_timeout:
            delays.append(max(0.001, self.body_deadline - time.monotonic()))
        if delays:
            self.deadline.set(min(delays), self._body_timeout)

    def _body_timeout(self) -> None:
        if self.head is None or self.conn.closed or self.core.body_complete:
            return
        config = self.host.config
        detail = (f"request body not complete within {config.body_timeout}s"
                  if config.body_timeout and time.monotonic() >= self.body_deadline - 0.001
                  else f"no request body bytes for {config.body_idle_timeout}s")
        log.info("%s %s from %s: %s; answering 408", self.head.method, self.head.path,
                 self.conn.client, detail)
        self.core.must_close = True
        self._on_reject(Reject(408, detail, error_response(408, "request body too slow")))

    def _header_timeout(self) -> None:
        if self.head is not None or self.conn.closed:
            return
        if self.saw_bytes:
            log.info("connection %s from %s: headers not complete after %ss; closing",
                     self.conn.id, client_text(self.conn.client),
                     self.host.config.header_timeout)
            self.conn.write(error_response(408, "request headers took too long"))
        self.conn.close()

    def _response_timeout(self) -> None:
        if self.head is None or self.conn.closed:
            return
        log.warning("no http.response on %s for %s %s within %ss: answering 504",
                    self.reply_channel, self.head.method, self.head.path,
                    self.host.config.http_response_timeout)
        if self.status:  # a streamed response stalled: nothing sensible to add
            self._forget_reply()
            self.conn.abort()
            return
        self._simple_response(504, b"no response from the consumer in time\n")

    # -------------------------------------------------------------- input

    def data_received(self, data: bytes) -> None:
        if self.head is None and not self.saw_bytes:
            # First byte of a request: from now on headers must finish in time.
            self.saw_bytes = True
            self.deadline.set(self.host.config.header_timeout, self._header_timeout)
        self.core.receive(data)
        self._process()

    def eof_received(self) -> None:
        self.core.receive(b"")
        self._process()

    def _process(self) -> None:
        core = self.core
        while not self.conn.closed and self.conn.session is self:
            event = core.next_event()
            if event is None:
                break
            if type(event) is Body:
                self._on_body(event.data)
            elif type(event) is RequestHead:
                self._on_head(event)
            elif type(event) is EndOfBody:
                self._on_end()
            elif type(event) is Reject:
                self._on_reject(event)
                return
            elif type(event) is Disconnected:
                self._on_disconnect()
                return
        if self.head is not None and core.buffered > _PIPELINE_LIMIT:
            self.conn.pause_reading()

    def _on_head(self, head: RequestHead) -> None:
        self.deadline.cancel()
        config = self.host.config
        apply_proxy_headers(head, self.conn.client, "http", config.root_path,
                            config.proxy_headers, config.trusted_proxies)
        self.head = head
        self.started_at = time.monotonic()
        if head.websocket:
            for reply_channel, path in self.answered:  # this session's HTTP part ends
                self._disconnect_answered(reply_channel, path)
            self.answered = []
            self.conn.session = WebSocketSession(self.conn, head, self.core)
            self.conn.session.start()
            return
        self.route = "channel" if self.host.has_http_route(head) else "wsgi"
        if self.route == "channel":
            self.reply_channel = self.host.replies.new_channel()
        else:
            self.body = SpooledBody(self.host.body_memory, config.body_spool_threshold)
        if head.content_length or head.header(b"transfer-encoding") is not None:
            self.body_deadline = self.started_at + config.body_timeout
            self._arm_body_timer()
        self.conn.write(self.core.continue_100())

    def _on_body(self, data: bytes) -> None:
        if not data or self.head is None:
            return
        if self.body_deadline:
            self._arm_body_timer()
        if self.route == "wsgi":
            body = self.body
            if body is None:
                return  # already answered (503 below): the rest is discarded
            try:
                body.write(data)  # memory while small and within budget, else a file
            except OSError as exc:
                log.error("cannot spool the body of %s %s to disk (%s): answering 503",
                          self.head.method, self.head.path, exc)
                self._release_body()
                self._simple_response(503, b"server busy, try again\n", close=True)
            return
        held = self.host.body_memory.take(len(data))
        if held:
            self.body_held += len(data)
        self.body_parts.append(data)
        self.body_size += len(data)
        # Over the memory budget: pass what we have to the layer now.
        if self.body_size >= self.host.config.body_chunk_size or not held:
            self._send_body_chunk(more=True)

    def _send_body_chunk(self, more: bool) -> None:
        """Stream the body: the first chunk rides on ``http.request`` itself."""
        self.host.body_memory.give(self.body_held)
        self.body_held = 0
        chunk = b"".join(self.body_parts)
        self.body_parts = []
        self.body_size = 0
        if not self.body_channel:
            self.body_channel = self.host.layer.new_channel("http.request.body?")
            self._send_request(chunk)
            return
        try:
            self.outbox.send(
                self.body_channel, {"content": chunk, "closed": False, "more_content": more}
            )
        except MessageTooLarge as exc:
            log.error("cannot stream request body on %s: %s", self.body_channel, exc)
            # The rest of the body will never arrive: a consumer reading it
            # stops now instead of at its own timeout.
            self._close_body_channel()
            self._simple_response(503, b"server busy\n", close=True)

    def _close_body_channel(self) -> None:
        """Tell the consumer reading the body that no more of it will come."""
        try:
            self.host.layer.send(
                self.body_channel, {"content": b"", "closed": True, "more_content": False}
            )
        except Exception:  # ChannelFull, or a failing layer: best effort
            pass

    def _on_end(self) -> None:
        head = self.head
        if head is None or self.conn.session is not self:
            return
        if self.route == "wsgi":
            body, self.body = self.body, None  # the pool thread closes it after the view
            self.deadline.cancel()
            if body is None:
                return
            if not self.host.submit_wsgi(self, head, body):
                body.close()
                self.host.log_limited("%d WSGI requests wait for a thread "
                                       "(max_queued_requests): answering 503",
                                       self.host.config.max_queued_requests)
                self._simple_response(503, b"server busy, try again\n",
                                      headers=[(b"retry-after", b"1")])
        elif self.body_channel:
            self._send_body_chunk(more=False)
            if self.reply_channel in self.host.replies:  # the body timer is done
                self.deadline.set(self.host.config.http_response_timeout,
                                self._response_timeout)
        else:
            data = b"".join(self.body_parts)
            self.body_parts = []
            self.host.body_memory.give(self.body_held)
            self.body_held = 0
            self._send_request(data)

    def _send_request(self, body: bytes) -> None:
        assert self.head is not None
        message = asgi_request(
            self.head, self.reply_channel, body, self.head.client, self.conn.server_addr,
            self.head.root_path, self.head.scheme, body_channel=self.body_channel or None,
        )
        try:
            # A full channel: kept (not read further) until there is room.
            self.outbox.send("http.request", message, on_sent=self._request_sent)
        except MessageTooLarge as exc:
            log.error("http.request for %s too large for the layer: %s", self.head.path, exc)
            self._simple_response(431, b"request too large for the channel layer\n", close=True)

    def _request_sent(self, message: dict[str, Any]) -> None:
        # Listen only once sent (the registry's rule): an undelivered request
        # gets no http.disconnect. (Replies reach us on this thread, after this
        # returns: none can be missed.)
        self.host.replies.listen(self.reply_channel, self)
        self.deadline.set(self.host.config.http_response_timeout, self._response_timeout)

    # ---------------------------------------------------- back-pressure

    def layer_blocked(self) -> None:
        """A channel is full: stop reading (TCP pushes back on the client)."""
        self.conn.pause_reading()

    def layer_unblocked(self) -> None:
        if not self.conn.closed and not self.conn.closing:
            self.conn.resume_reading()

    def layer_timeout(self, channel: str, dropped: list[tuple[str, dict[str, Any]]]) -> None:
        """``channel`` stayed full for ``backpressure_timeout`` (counted and
        logged per interval by the server): 503 with ``Retry-After``."""
        if self.conn.closed or self.head is None or self.status:
            self.conn.abort()
            return
        self._client_gone()  # a consumer already has the request: it is abandoned
        self._simple_response(503, b"server busy, try again\n", close=True,
                              headers=[(b"retry-after", b"%d" % max(1, round(
                                  self.host.config.backpressure_timeout)))])

    def layer_send_failed(self, channel: str, message: dict[str, Any], exc: Exception) -> None:
        log.error("cannot send %s for %s: %s", channel, self.head and self.head.path, exc)
        if self.conn.closed or self.head is None or self.status:
            self.conn.abort()
            return
        self._client_gone()
        self._simple_response(503, b"server busy\n", close=True)

    def _on_reject(self, event: Reject) -> None:
        log.info("bad request from %s: %s %s", client_text(self.conn.client), event.status,
                 event.reason)
        self.status = event.status
        if self.route == "channel" and self.reply_channel in self.host.replies:
            self._client_gone()
        # A request still waiting for room must not reach a consumer after
        # its client was refused (the socket may take a while to close).
        self.outbox.discard()
        self._forget_reply()
        self.conn.write(event.data)
        self.conn.close()

    def _on_disconnect(self) -> None:
        if self.head is not None and not self.core.response_done:
            if self.route == "wsgi" and self.core.body_complete:
                # Possibly only a half-close (``printf ... | nc``): a view is
                # running anyway, so write its answer, then close. A socket that
                # is really gone fails the write and is dropped then.
                self.core.must_close = True
                return
            self._client_gone()
        self.conn.close()

    def _client_gone(self) -> None:
        """The client left before its response finished: tell the consumer."""
        self.outbox.discard()  # an abandoned request's messages still waiting for room
        if self.route == "channel" and self.reply_channel in self.host.replies:
            assert self.head is not None
            try:
                if self.host.routes_http_disconnect(self.head.path):
                    self.host.layer.send("http.disconnect", {
                        "reply_channel": self.reply_channel, "path": self.head.path})
            except ChannelFull:
                log.warning("http.disconnect channel full; dropped for %s", self.reply_channel)
            except Exception:
                # Callers close the socket after this; a failing layer must not stop them.
                log.exception("cannot send http.disconnect for %s", self.reply_channel)
            if self.body_channel and not self.core.body_complete:
                self._close_body_channel()
        self._forget_reply()

    def connection_lost(self) -> None:
        self.gone = True
        self.deadline.stop()
        if self.head is not None and not self.core.response_done:
            self._client_gone()
        self.outbox.discard()  # e.g. body chunks of a request answered early
        for reply_channel, path in self.answered:
            self._disconnect_answered(reply_channel, path)
        self.answered = []
        self._release_body()
        self.drained()  # never leave a WSGI thread waiting on a dead socket

    def _disconnect_answered(self, reply_channel: str, path: str) -> None:
        """``http.disconnect`` for a consumer request already answered."""
        try:
            self.host.layer.send("http.disconnect", {"reply_channel": reply_channel,
                                                       "path": path})
        except Exception as exc:  # ChannelFull, or a failing layer: best effort
            log.warning("cannot send http.disconnect for %s: %s", reply_channel, exc)

    def _forget_reply(self) -> None:
        self.host.replies.forget(self.reply_channel)

    def drain(self) -> None:
        """Server shutdown: an idle keep-alive connection closes now; a request
        in flight finishes (its response then closes the connection)."""
        if self.head is None:
            self.conn.close()

    def wsgi_stalled(self) -> None:
        """The pool thread gave up waiting for this client to read a streamed
        body (it asks the loop: it never writes session state itself)."""
        log.warning("client %s not reading a streamed response; dropping it", self.conn.client)
        self.conn.abort()  # connection_lost() sets ``gone``: the thread stops producing

    # ------------------------------------------------------------- output

    def on_reply(self, message: dict[str, Any]) -> None:
        """An ``http.response`` (or a chunk of one) from a consumer."""
        if self.conn.closed or self.head is None:
            return
        try:
            problem = check_response(message, started=bool(self.status))
            if problem:
                raise ValueError(problem)
            if not self.status:
                status = message["status"]
                headers = response_headers(message)
                content = message.get("content", b"")
                more = bool(message.get("more_content", False))
                self.deadline.cancel()
                data = self.core.response_start(status, headers, content, more)
                self.status = status
            else:
                content = message.get("content", b"")
                more = bool(message.get("more_content", False))
                data = self.core.response_body(content, more)
        except (KeyError, ValueError, TypeError, h11.LocalProtocolError) as exc:
            log.error("invalid http.response on %s: %s (message keys: %s)",
                      self.reply_channel, exc,
                      sorted(message) if isinstance(message, dict) else "-")
            if not self.status:
                self._simple_response(500, b"invalid response from the consumer\n", close=True)
            else:
                self._forget_reply()
                self.conn.abort()
            return
        self.sent += len(content)
        self.conn.write(data)
        if not more:
            self._response_done()

    def _simple_response(self, status: int, body: bytes, close: bool = False,
                         headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if close:
            self.core.must_close = True
        try:
            data = self.core.response_start(
                status, [(b"content-type", b"text/plain"), *(headers or ())], body)
        except h11.LocalProtocolError:
            # h11 refuses a second response head: the consumer's response has
            # started already (it answered before the request body ended).
            # Another head inside its body would garble it: just close.
            self.conn.close()
            self._forget_reply()
            return
        self.status = status
        self.sent = len(body)
        self.conn.write(data)
        self._response_done()

    def _response_done(self) -> None:
        if self.route == "channel" and self.reply_channel in self.host.replies:
            # Delivered to a consumer: it hears http.disconnect when the
            # connection closes, even though this response is complete.
            assert self.head is not None
            if self.host.routes_http_disconnect(self.head.path):
                self.answered.append((self.reply_channel, self.head.path))
            if len(self.answered) > 64:  # a long keep-alive: don't hoard them
                self._disconnect_answered(*self.answered.pop(0))
        self._forget_reply()
        self.deadline.cancel()
        head = self.head
        assert head is not None
        self.host.access(head, self.status, self.sent, self.conn.client, self.started_at)
        if self.host.draining or not self.core.finish():
            self.conn.close()
            return
        # Body chunks still waiting for room belong to the request just
        # answered: the next request must not queue behind them.
        self.outbox.discard()
        self._reset()
        self.deadline.set(self.host.config.keepalive_timeout, self._header_timeout)
        self.conn.resume_reading()
        if self.core.buffered:
            self.host.loop.call_soon(self.conn.guard, self._process)
