"""The message codec (chanlite.layers.codec): validation and msgpack round trips.

Why these cases: str and bytes must never be confused at any depth (HTTP
bodies are bytes, WebSocket text is str), a receiver must never share the
sender's object, and a bad message must fail at ``send`` naming the key.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict

import msgpack
import pytest

from chanlite.layers import codec
from chanlite.layers.memory import InMemoryChannelLayer


@pytest.fixture
def layer() -> InMemoryChannelLayer:
    return InMemoryChannelLayer()


ROUND_TRIPS = [
    {"text": "hello", "bytes": b"hello"},
    {"nested": {"deeper": {"s": "str", "b": b"\x00\xff", "list": [b"x", "y", [b"z", {"k": "v"}]]}}},
    {"emoji": "😀 👍🏽 家族", "bytes_emoji": "😀".encode()},
    {"control": "\x00\x01\x1f\x7f", "nul": b"\x00" * 10, "crlf": "a\r\nb"},
    {"ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1], "floats": [0.5, -1e300, float("inf")]},
    {"bool": True, "false": False, "none": None, "empty": {}, "empty_list": [], "empty_b": b""},
    {"": "empty key", "ключ": "unicode key"},
]


@pytest.mark.parametrize("message", ROUND_TRIPS)
def test_round_trip_keeps_types_at_any_depth(layer, message: dict) -> None:
    layer.send("c", message)
    _, got = layer.receive(["c"])
    assert got == message
    assert repr(got) == repr(message)  # same types: bytes stay bytes, str stays str


def test_received_message_is_independent_of_the_senders_object(layer) -> None:
    message = {"list": [1, {"inner": [b"a"]}], "dict": {"k": "v"}}
    layer.send("c", message)
    message["list"][1]["inner"].append(b"b")
    message["dict"]["k"] = "changed"
    message["new"] = 1
    _, got = layer.receive(["c"])
    assert got == {"list": [1, {"inner": [b"a"]}], "dict": {"k": "v"}}


def test_each_group_member_gets_its_own_copy(layer) -> None:
    for name in ("m1", "m2"):
        layer.group_add("g", name)
    layer.send_group("g", {"list": [1]})
    _, first = layer.receive(["m1"])
    first["list"].append(2)
    assert layer.receive(["m2"]) == ("m2", {"list": [1]})


class Colour(enum.IntEnum):
    RED = 1


class MyDict(dict):
    pass


@pytest.mark.parametrize(
    ("message", "path", "type_name"),
    [
        ({"a": (1, 2)}, "'a'", "tuple"),
        ({"a": {1, 2}}, "'a'", "set"),
        ({"a": {"b": [1, {"c": object()}]}}, "'a.b[1].c'", "object"),
        ({"a": bytearray(b"x")}, "'a'", "bytearray"),
        ({"a": Colour.RED}, "'a'", "Colour"),
        ({"a": [MyDict()]}, "'a[0]'", "MyDict"),
        ({"a": [[1, [2, 1j]]]}, "'a[0][1][1]'", "complex"),
    ],
)
def test_unsupported_values_name_the_key_path(layer, message, path, type_name) -> None:
    with pytest.raises(TypeError) as info:
        layer.send("c", message)
    assert f"message key {path} holds {type_name}" in str(info.value)
    assert layer.global_statistics()["messages_pending"] == 0


@pytest.mark.parametrize(
    ("message", "shown"),
    [({1: "x"}, "message key 1 is a int"), ({"a": {"b": {(1,): 2}}}, "a.b.(1,) is a tuple")],
)
def test_non_str_keys_are_refused(layer, message: dict, shown: str) -> None:
    with pytest.raises(TypeError, match="keys must be str") as info:
        layer.send("c", message)
    assert shown in str(info.value)


@pytest.mark.parametrize(
    ("message", "path"),
    [({"n": 2**64}, "'n'"), ({"n": -(2**63) - 1}, "'n'"), ({"a": [0, {"b": 10**30}]}, "'a[1].b'")],
)
def test_integers_beyond_64_bits_are_refused_with_their_path(layer, message, path) -> None:
    with pytest.raises(TypeError, match="does not fit in 64 bits") as info:
        layer.send("c", message)
    assert f"message key {path}" in str(info.value)
    # the per-thread encoder is still usable after the failure
    layer.send("c", {"n": 2**64 - 1})
    assert layer.receive(["c"]) == ("c", {"n": 2**64 - 1})


@pytest.mark.parametrize("message", [[1], "text", None, OrderedDict(a=1), b"x"])
def test_a_message_must_be_a_plain_dict(layer, message: object) -> None:
    with pytest.raises(TypeError, match="a message must be a dict"):
        layer.send("c", message)  # type: ignore[arg-type]


def test_check_message_validates_without_sending() -> None:
    codec.check_message({"ok": [1, "x", b"y"]})
    with pytest.raises(TypeError, match="64 bits"):
        codec.check_message({"big": [2**70]})


def test_encode_decode_are_inverse_and_bytes() -> None:
    data = codec.encode({"a": [b"\x00", "\x00"]})
    assert isinstance(data, bytes)
    assert codec.decode(data) == {"a": [b"\x00", "\x00"]}


def test_message_too_large_counts_encoded_size() -> None:
    layer = InMemoryChannelLayer(max_message_size=100)
    fits = next(n for n in range(200) if len(codec.encode({"b": b"x" * n})) == 100)
    layer.send("c", {"b": b"x" * fits})  # exactly the limit is allowed
    with pytest.raises(
        layer.MessageTooLarge, match="101 bytes encoded, above max_message_size=100"
    ):
        layer.send("c", {"b": b"x" * (fits + 1)})
    with pytest.raises(InMemoryChannelLayer.MessageTooLarge):
        layer.send_group("g", {"b": b"x" * (fits + 1)})
    assert layer.channel_statistics("c")["messages_pending"] == 1
    assert issubclass(layer.MessageTooLarge, ValueError)


# --- exact errors and boundaries (issue 20: mutation-testing survivors)

_ALLOWED = ("Messages may contain only str, bytes, int, float, bool, None, "
            "list and dict with str keys.")


@pytest.mark.parametrize("message, key, held", [
    ({"a": {1}}, "a", "set {1}"),
    ({"a": [1, {2}]}, "a[1]", "set {2}"),
    ({"ok": 1, "b": {3}}, "b", "set {3}"),  # checking goes on past a good value
])
def test_unsupported_value_error_names_key_type_and_what_is_allowed(message, key, held):
    with pytest.raises(TypeError) as failure:
        codec.encode(message)
    assert str(failure.value) == f"message key {key!r} holds {held}: unsupported type. {_ALLOWED}"


@pytest.mark.parametrize("value", [-(2**63), 2**64 - 1])
def test_integers_at_the_64_bit_limits_are_sendable(value):
    codec.check_message({"a": [value]})
    assert codec.decode(codec.encode({"a": value})) == {"a": value}


def test_too_big_integer_error_names_the_key_and_the_value():
    with pytest.raises(TypeError) as failure:
        codec.check_message({"a": 2**64})
    assert str(failure.value) == (
        f"message key 'a' holds int {2**64}: integer does not fit in 64 bits. {_ALLOWED}"
    )


@pytest.mark.parametrize("check", [codec.encode, codec.check_message])
def test_a_non_dict_message_error_names_its_type(check):
    with pytest.raises(TypeError, match=r"^a message must be a dict, not list \(\[1\]\)$"):
        check([1])


def test_check_message_names_top_level_keys_plainly():
    with pytest.raises(TypeError, match=r"^message key 'a' holds set \{1\}: unsupported type\."):
        codec.check_message({"a": {1}})


def _nested(depth: int, kinds: str) -> tuple[dict, str]:
    """A message ``depth`` levels deep (the message dict is level 1), the
    levels below it cycling through ``kinds`` ("d" dict, "l" list), and the
    key path of its deepest container as the codec names it."""
    inner: object = "leaf"
    levels = [kinds[i % len(kinds)] for i in range(depth - 1)]
    for kind in reversed(levels):
        inner = {"k": inner} if kind == "d" else [inner]
    path = ""
    parent = "d"
    for kind in levels:
        path = (f"{path}.k" if path else "k") if parent == "d" else f"{path}[0]"
        parent = kind
    return {"k": inner} if levels else {"k": "leaf"}, path


@pytest.mark.parametrize("kinds", ["d", "l", "dl", "ld"])
def test_nesting_is_allowed_exactly_to_max_depth_and_the_error_names_the_key(kinds):
    deepest, _ = _nested(codec.MAX_DEPTH, kinds)
    assert codec.decode(codec.encode(deepest)) == deepest
    too_deep, path = _nested(codec.MAX_DEPTH + 1, kinds)
    for check in (codec.encode, codec.check_message):
        with pytest.raises(TypeError) as excinfo:
            check(too_deep)
        assert str(excinfo.value) == (
            f"message key {path!r} is nested more than {codec.MAX_DEPTH} dicts/lists deep; "
            "flatten the message")


def test_each_thread_encodes_with_its_own_packer():
    """A Packer is made per thread (not shareable): a fresh thread's first and
    later encodes both work, bytes stay bytes and nothing is left buffered."""
    results: list = []

    def encode_twice():
        try:
            results.extend(codec.encode({"b": b"\x00\xff", "n": i}) for i in range(2))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    thread = threading.Thread(target=encode_twice)
    thread.start()
    thread.join(10)
    assert [codec.decode(data) for data in results] == [
        {"b": b"\x00\xff", "n": 0}, {"b": b"\x00\xff", "n": 1}], results


def test_a_msgpack_extension_type_is_refused_by_decode():
    data = msgpack.packb({"x": msgpack.ExtType(5, b"abc")})
    with pytest.raises(ValueError) as excinfo:
        codec.decode(data)
    assert str(excinfo.value) == "msgpack extension type 5 is not part of a message"
