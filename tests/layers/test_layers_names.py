"""Channel and group name rules (chanlite.layers.names), through a real layer.

Why through the layer: users meet these rules as errors from ``send``,
``receive``, ``group_add`` and ``new_channel``; the message must show the
bad name and say what to change.
"""

from __future__ import annotations

import pytest

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.layers.names import (
    MAX_NAME_LENGTH,
    check_group_name,
    check_new_channel_pattern,
    queue_for_receive,
    queue_for_send,
    remember,
)


@pytest.fixture
def layer() -> InMemoryChannelLayer:
    return InMemoryChannelLayer()


@pytest.mark.parametrize(
    "name", ["a", "http.request", "A-Z_0.9", "reply?abc", "daphne.response!x1", "x" * 99]
)
def test_valid_names_are_accepted(layer: InMemoryChannelLayer, name: str) -> None:
    layer.send(name, {"ok": 1})
    queue = name.split("!")[0] + "!" if "!" in name else name
    assert layer.receive([queue]) == (name, {"ok": 1})


@pytest.mark.parametrize(
    "name", ["", "has space", "ünïcode", "a/b", "a?b?c", "a!b!c", "a?b!c", "?x", "!x", "a\n"]
)
def test_invalid_channel_names_are_type_errors_showing_the_name(
    layer: InMemoryChannelLayer, name: str
) -> None:
    with pytest.raises(TypeError) as info:
        layer.send(name, {})
    assert repr(name) in str(info.value)
    assert "ASCII letters" in str(info.value)


@pytest.mark.parametrize("length", [MAX_NAME_LENGTH, MAX_NAME_LENGTH + 1, 500])
def test_names_of_100_characters_or_more_are_refused(layer, length: int) -> None:
    name = "x" * length
    for call in (
        lambda: layer.send(name, {}),
        lambda: layer.receive([name]),
        lambda: layer.group_add("g", name),
        lambda: layer.group_add(name, "x"),
    ):
        with pytest.raises(TypeError, match=f"is {length} characters"):
            call()


@pytest.mark.parametrize("name", [b"bytes", 1, None, ["a"], ("a",)])
def test_non_str_names_are_refused(layer: InMemoryChannelLayer, name: object) -> None:
    with pytest.raises(TypeError, match="must be a str"):
        layer.send(name, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        layer.receive([name])  # type: ignore[list-item]


def test_str_subclass_is_not_a_name(layer: InMemoryChannelLayer) -> None:
    class Name(str):
        pass

    with pytest.raises(TypeError, match="must be a str, not Name"):
        layer.send(Name("a"), {})


def test_receive_from_process_specific_channel_points_to_the_prefix(layer) -> None:
    with pytest.raises(TypeError) as info:
        layer.receive(["daphne.response!x1"])
    assert "receive(['daphne.response!'])" in str(info.value)


@pytest.mark.parametrize("pattern", ["reply!", "reply?"])
def test_send_to_a_pattern_says_use_new_channel(layer, pattern: str) -> None:
    with pytest.raises(TypeError, match=r"new_channel\('reply[!?]'\)"):
        layer.send(pattern, {})


def test_receive_takes_a_list_not_a_string(layer: InMemoryChannelLayer) -> None:
    with pytest.raises(TypeError, match="list of channel names, not str"):
        layer.receive("http.request")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one"):
        layer.receive([])


def test_receive_accepts_tuples_of_names(layer: InMemoryChannelLayer) -> None:
    layer.send("b", {"n": 1})
    assert layer.receive(("a", "b")) == ("b", {"n": 1})


@pytest.mark.parametrize("group", ["room!1", "room?1", "", "a b", "x" * 100, 5])
def test_bad_group_names(layer: InMemoryChannelLayer, group: object) -> None:
    with pytest.raises(TypeError, match="group name"):
        layer.group_add(group, "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="group name"):
        layer.send_group(group, {})  # type: ignore[arg-type]


def test_cached_names_still_validate_the_type() -> None:
    assert queue_for_send("cached.name") == "cached.name"
    assert queue_for_send("cached!x") == "cached!"
    assert queue_for_receive("cached!") == "cached!"
    assert check_group_name("room-1") == "room-1"
    with pytest.raises(TypeError):
        queue_for_send(["cached.name"])


@pytest.mark.parametrize("pattern", ["reply", "reply!x", "re ply?", "!", "?", 3])
def test_new_channel_needs_a_pattern(layer: InMemoryChannelLayer, pattern: object) -> None:
    with pytest.raises(TypeError, match="name"):
        layer.new_channel(pattern)  # type: ignore[arg-type]


def test_new_channel_names_are_unique_and_usable(layer: InMemoryChannelLayer) -> None:
    names = {layer.new_channel("reply?") for _ in range(2000)}
    assert len(names) == 2000
    assert all(name.startswith("reply?") and len(name) > len("reply?") for name in names)
    specific = layer.new_channel("daphne.response!")
    layer.send(specific, {"x": 1})
    assert layer.receive(["daphne.response!"]) == (specific, {"x": 1})


def test_new_channel_result_must_fit_the_length_limit(layer: InMemoryChannelLayer) -> None:
    with pytest.raises(TypeError, match="characters"):
        layer.new_channel("x" * 95 + "?")


# --- error messages name what was wrong (issue 20: mutation-testing survivors)


@pytest.mark.parametrize("check", [queue_for_send, queue_for_receive, check_new_channel_pattern])
def test_a_non_str_channel_name_error_says_channel(check):
    with pytest.raises(TypeError, match=r"^channel name must be a str, not int \(5\)$"):
        check(5)


def test_a_too_long_name_error_quotes_its_first_40_characters():
    name = "abcdefghij" * 10
    with pytest.raises(TypeError) as failure:
        queue_for_send(name)
    assert str(failure.value).startswith(f"channel name {name[:40]!r}... is 100 characters; ")
    with pytest.raises(TypeError, match=r"^group name 'abcdefghij"):
        check_group_name(name)


def test_an_invalid_group_name_error_says_what_is_allowed():
    with pytest.raises(TypeError) as failure:
        check_group_name("a b")
    assert str(failure.value) == (
        "invalid group name 'a b': group names are shorter than 100 characters "
        "and made of ASCII letters, digits, '.', '_' and '-'"
    )


def test_receive_from_a_name_with_two_bangs_is_invalid_not_a_prefix_hint():
    with pytest.raises(TypeError, match=r"^invalid channel name 'a!b!c' for receive"):
        queue_for_receive("a!b!c")


@pytest.mark.parametrize("pattern", ["a%?", "a b!", "%!"])
def test_new_channel_pattern_body_is_checked_whole(pattern):
    with pytest.raises(TypeError, match=r"^new_channel\(\) takes a pattern"):
        check_new_channel_pattern(pattern)


def test_remember_bounds_a_cache_by_starting_it_over():
    cache: dict[str, int] = {}
    for n in range(10):
        assert remember(cache, f"c{n}", n, limit=4) == n
        assert len(cache) <= 4, cache
    assert cache == {"c8": 8, "c9": 9}  # emptied at c8, the 5th entry after c4
