"""Hypothesis: random and mutated requests and frames never crash, hang or leak.

The protocol cores get arbitrary bytes split at arbitrary points; the live
server gets the same over real sockets and must keep answering a normal
request afterwards with no connection left behind. Bounded by the active
Hypothesis profile (``--hypothesis-profile=ci`` in CI).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from chanlite.server.http import Disconnected, EndOfBody, HTTPCore, Reject, RequestHead
from chanlite.server.websocket import Closed, WebSocketCore
from chanlite.testing import eventually

from .server_fixtures import WAIT, http_request, raw_socket

VALID_REQUESTS = [
    b"GET /hello/ HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /chan/body/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /hello/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    b"GET /echo/ HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /chan/hello/ HTTP/1.0\r\n\r\n",
]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A valid seed with random bytes overwritten, inserted or deleted (or pure noise)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 2))
        junk = draw(st.binary(min_size=1, max_size=8))
        if op == 0:
            data[pos:pos + len(junk)] = junk
        elif op == 1:
            data[pos:pos] = junk
        else:
            del data[pos:pos + len(junk)]
    return bytes(data)


def split(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    pieces, last = [], 0
    for cut in cuts + [len(data)]:
        pieces.append(data[last:cut])
        last = cut
    return [p for p in pieces if p]


@given(st.data())
def test_http_core_survives_anything(data):
    core = HTTPCore(max_header_size=2048, max_request_body=4096)
    payload = data.draw(mutated(VALID_REQUESTS))
    closed = False
    for piece in split(data.draw, payload) + [b""]:
        core.receive(piece)
        for _ in range(100):  # bounded: each event consumes input or ends a cycle
            event = core.next_event()
            if event is None:
                break
            assert isinstance(event, (RequestHead, EndOfBody, Disconnected, Reject)) or hasattr(
                event, "data")
            if isinstance(event, (Reject, Disconnected)):
                closed = True
                break
            if isinstance(event, EndOfBody):
                if core.head is not None and core.head.websocket:
                    core.reject_websocket(403)
                else:
                    core.response_start(200, [], b"ok")
                if not core.finish():
                    closed = True
                    break
        else:
            raise AssertionError("next_event() kept producing events without input")
        if closed:
            break


FRAME_SEEDS = []
_client = Connection(ConnectionType.CLIENT)
for event in [TextMessage(data="hello"), BytesMessage(data=b"\x00" * 200), Ping(payload=b"p"),
              TextMessage(data="frag", message_finished=False), TextMessage(data="ment"),
              CloseConnection(code=1000)]:
    FRAME_SEEDS.append(_client.send(event))


@given(st.data())
def test_websocket_core_survives_anything(data):
    core = WebSocketCore(max_message_size=1000)
    payload = data.draw(mutated(FRAME_SEEDS))
    closed = 0
    for piece in split(data.draw, payload):
        events = core.receive(piece)
        closed += sum(isinstance(e, Closed) for e in events)
        core.data_to_send()
    closed += sum(isinstance(e, Closed) for e in core.receive(None))
    assert closed == 1  # exactly one close, however the stream ended


def test_live_server_survives_fuzzed_requests_and_frames(chanlite_server, caplog):
    server = chanlite_server(header_timeout=1.0, websocket_connect_timeout=1.0,
                             websocket_close_timeout=0.5, max_request_body=4096)
    handshake = VALID_REQUESTS[4]

    @settings(suppress_health_check=list(HealthCheck), deadline=None)
    @given(st.data())
    def fuzz(data):
        if data.draw(st.booleans()):
            payload = data.draw(mutated(VALID_REQUESTS))
            prefix = b""
        else:
            payload = data.draw(mutated(FRAME_SEEDS))
            prefix = handshake
        sock = raw_socket(server)
        sock.settimeout(0.2)
        try:
            if prefix:
                sock.sendall(prefix)
                sock.recv(4096)  # the 101 (or nothing yet)
            for piece in split(data.draw, payload):
                sock.sendall(piece)
            try:
                sock.recv(65536)
            except TimeoutError:
                pass
        except OSError:
            pass  # the server may close on us mid-send: fine
        finally:
            sock.close()

    fuzz()
    # Still healthy, and every fuzzing connection was cleaned up.
    assert http_request(server, "GET", "/hello/")[0] == 200
    eventually(lambda: not server.connections,
               lambda: f"every fuzzing connection to close ({len(server.connections)} leaked)",
               timeout=WAIT)
    assert not server.replies, "reply channels leaked"
    crashes = [r for r in caplog.records if r.exc_info and r.name.startswith("chanlite.server")]
    assert not crashes, f"server code raised: {crashes[0].getMessage()}"
