"""The WebSocket protocol core, driven with frames from a wsproto client."""

from __future__ import annotations

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from chanlite.server.websocket import Closed, PongReceived, WebSocketCore, check_send


def client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def client_events(cli: Connection, data: bytes) -> list:
    cli.receive_data(data)
    return list(cli.events())


def test_text_and_binary_messages():
    core, cli = WebSocketCore(), client()
    wire = cli.send(TextMessage(data="héllo")) + cli.send(BytesMessage(data=b"\x00\x01"))
    assert core.receive(wire) == [{"text": "héllo"}, {"bytes": b"\x00\x01"}]


def test_fragmented_message_is_reassembled_across_reads():
    core, cli = WebSocketCore(), client()
    wire = (
        cli.send(TextMessage(data="ab", message_finished=False))
        + cli.send(Ping(payload=b"p"))  # control frames may interleave fragments
        + cli.send(TextMessage(data="cd", message_finished=True))
    )
    events = []
    for i in range(len(wire)):  # one byte at a time
        events += core.receive(wire[i : i + 1])
    assert events == [{"text": "abcd"}]
    # The ping was answered with a pong carrying the same payload.
    got = client_events(cli, core.data_to_send())
    assert got == [Pong(payload=b"p")]


def test_pong_is_reported():
    core, cli = WebSocketCore(), client()
    core.ping(b"x")
    assert client_events(cli, core.data_to_send()) == [Ping(payload=b"x")]
    assert core.receive(cli.send(Pong(payload=b"x"))) == [PongReceived()]


def test_client_close_is_echoed_and_reported():
    core, cli = WebSocketCore(), client()
    events = core.receive(cli.send(CloseConnection(code=4001, reason="bye")))
    assert events == [Closed(4001, "bye")]
    assert client_events(cli, core.data_to_send())[0].code == 4001
    assert core.close_complete
    assert core.receive(b"more") == []


def test_close_without_code_reports_1005_and_replies_1000():
    core, cli = WebSocketCore(), client()
    events = core.receive(b"\x88\x80abcd")  # masked close frame, empty payload
    assert events[0].code == 1005 and type(events[0].code) is int
    assert client_events(cli, core.data_to_send())[0].code == 1000


def test_drop_is_1006():
    core = WebSocketCore()
    assert core.receive(None) == [Closed(1006, "connection dropped")]


def test_message_too_big_closes_1009():
    core, cli = WebSocketCore(max_message_size=10), client()
    events = core.receive(cli.send(BytesMessage(data=b"x" * 11)))
    assert events == [Closed(1009, "message above 10 bytes", fatal=True)]
    assert client_events(cli, core.data_to_send())[0].code == 1009


def test_fragmented_text_too_big_closes_1009():
    core, cli = WebSocketCore(max_message_size=10), client()
    wire = cli.send(TextMessage(data="ééé", message_finished=False))  # 6 bytes
    assert core.receive(wire) == []
    events = core.receive(cli.send(TextMessage(data="ééé", message_finished=True)))
    assert [type(e) for e in events] == [Closed] and events[0].code == 1009


def test_limit_counts_bytes_not_characters():
    core, cli = WebSocketCore(max_message_size=8), client()
    assert core.receive(cli.send(TextMessage(data="éééé"))) == [{"text": "éééé"}]  # 8 bytes
    events = core.receive(cli.send(TextMessage(data="ééééé")))  # 10 bytes
    assert events[0].code == 1009


def test_unmasked_client_frame_is_protocol_error_1002():
    core = WebSocketCore()
    events = core.receive(b"\x81\x02hi")  # servers require masked frames
    assert [type(e) for e in events] == [Closed] and events[0].code == 1002
    assert events[0].fatal  # the stream is unusable: do not wait for a reply
    cli = client()
    assert client_events(cli, core.data_to_send())[0].code == 1002


@pytest.mark.parametrize("header", [
    b"\x03\xfe",  # a reserved opcode, before its extended length arrives
    b"\x08\x80",  # a close frame without FIN (control frames are never fragmented)
])
def test_a_header_error_fails_on_its_first_two_bytes(header):
    # As wsproto does: no waiting for the rest of a frame that is already wrong.
    events = WebSocketCore().receive(header)
    assert [(type(e), e.code) for e in events] == [(Closed, 1002)]


def test_a_header_error_wsproto_sees_only_with_its_payload_still_closes():
    # A continuation with no message to continue: wsproto says so only once
    # the payload starts, which arrives in a later read; it must reach it.
    core = WebSocketCore()
    assert core.receive(b"\x00\x81\x00\x00\x00\x00") == []
    events = core.receive(b"x")
    assert [(type(e), e.code) for e in events] == [(Closed, 1002)]


def test_invalid_utf8_is_1007():
    core, cli = WebSocketCore(), client()
    events = core.receive(cli.send(BytesMessage(data=b"\xff")).replace(b"\x82", b"\x81", 1))
    assert events[0].code == 1007


def test_server_close_then_client_reply_completes():
    core, cli = WebSocketCore(), client()
    assert core.send({"text": "bye", "close": 4000}) == [Closed(4000, "")]
    got = client_events(cli, core.data_to_send())
    assert got[0] == TextMessage(data="bye") and got[1].code == 4000
    assert not core.close_complete
    core.receive(cli.send(got[1].response()))
    assert core.close_complete


def test_send_after_close_is_ignored():
    core = WebSocketCore()
    core.send({"close": True})
    core.data_to_send()
    assert core.send({"text": "late"}) == []
    assert core.data_to_send() == b""


@pytest.mark.parametrize(
    "message",
    [
        {"text": "a", "bytes": b"b"},
        {"text": b"a"},
        {"bytes": "b"},
        {"close": 1004},
        {"close": "yes"},
        {"txt": "a"},
    ],
)
def test_invalid_sends_are_errors(message):
    assert check_send(message)
    with pytest.raises(ValueError):
        WebSocketCore().send(message)


def test_valid_sends():
    for message in [{"accept": True}, {"text": ""}, {"bytes": b""}, {"close": True},
                    {"close": 4999}, {"accept": True, "text": "x"}]:
        assert check_send(message) == ""


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_whole_messages_of_every_length_encoding_across_reads(size):
    core, cli = WebSocketCore(max_message_size=300_000), client()
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    wire = cli.send(BytesMessage(data=payload)) + cli.send(TextMessage(data="after"))
    events = []
    for start in range(0, len(wire), 7001):  # odd-sized reads split headers and payloads
        events += core.receive(wire[start : start + 7001])
    assert events == [{"bytes": payload}, {"text": "after"}]


def test_oversized_frame_is_refused_from_its_header():
    core = WebSocketCore(max_message_size=1000)
    # Only the header of a 2**40-byte frame: no need to wait for (or buffer) the payload.
    events = core.receive(b"\x82\xff" + (2**40).to_bytes(8, "big") + b"mask")
    assert [e.code for e in events] == [1009]


def test_reserved_bits_are_protocol_error():
    core = WebSocketCore()
    events = core.receive(b"\xc1\x81abcd" + b"x")  # RSV1 set, no extension negotiated
    assert events[0].code == 1002


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_sent_frames_parse_with_wsproto(size):
    core, cli = WebSocketCore(), client()
    core.send({"text": "é" * (size // 2)})
    core.send({"bytes": b"b" * size})
    events = client_events(cli, core.data_to_send())
    assert [(type(e), e.message_finished) for e in events] == [
        (TextMessage, True), (BytesMessage, True)]
    assert events[0].data == "é" * (size // 2) and events[1].data == b"b" * size
