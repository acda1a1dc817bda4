"""Building layers from ``settings.CHANNEL_LAYERS`` (chanlite.layers registry).

Why: a misconfigured layer must fail at start-up with an
``ImproperlyConfigured`` that says which key to change, and no setting at all
must still give a working in-memory layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from chanlite.layers import (
    get_channel_layer,
    layer_settings,
    reset_channel_layers,
    set_channel_layer,
)
from chanlite.layers.memory import InMemoryChannelLayer

MEMORY = "chanlite.layers.memory.InMemoryChannelLayer"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    reset_channel_layers()
    yield
    reset_channel_layers()


def layers(**aliases) -> override_settings:
    return override_settings(CHANNEL_LAYERS=aliases)


def test_no_setting_means_one_in_memory_layer(settings) -> None:
    del settings.CHANNEL_LAYERS
    layer = get_channel_layer()
    assert isinstance(layer, InMemoryChannelLayer)
    assert layer.alias == "default"
    assert get_channel_layer() is layer  # cached per alias


def test_config_is_passed_to_the_backend_and_routing_kept() -> None:
    with layers(default={"BACKEND": MEMORY, "CONFIG": {"capacity": 7, "expiry": 5},
                         "ROUTING": "tests.routing.channel_routing"}):
        layer = get_channel_layer()
        assert (layer.capacity, layer.expiry) == (7, 5)
        assert layer_settings()["ROUTING"] == "tests.routing.channel_routing"


def test_aliases_are_separate_layers() -> None:
    with layers(default={"BACKEND": MEMORY}, other={"BACKEND": MEMORY}):
        assert get_channel_layer("other") is not get_channel_layer()
        assert get_channel_layer("other").alias == "other"


@pytest.mark.parametrize(
    ("setting", "alias", "message"),
    [
        ({"default": {"BACKEND": "no.such.module.Layer"}}, "default",
         r"\['BACKEND'\] = 'no.such.module.Layer' cannot be imported"),
        ({"default": {"BACKEND": "chanlite.layers.memory.NoSuchClass"}}, "default",
         "cannot be imported"),
        ({"default": {"BACKEND": "collections.OrderedDict"}}, "default",
         "is not a channel layer class"),
        ({"default": {"BACKEND": "chanlite.layers.memory"}}, "default",
         "is not a channel layer class"),
        ({"default": {"BACKEND": MEMORY, "CONFG": {}}}, "default",
         r"unknown keys \['CONFG'\]; allowed: \['BACKEND', 'CONFIG', 'ROUTING', 'TEST_CONFIG'\]"),
        ({"default": {"CONFIG": {}}}, "default", "needs a 'BACKEND'"),
        ({"default": {"BACKEND": MEMORY}}, "missing",
         r"no channel layer 'missing' in CHANNEL_LAYERS \(configured: 'default'\)"),
        ({"default": {"BACKEND": MEMORY, "CONFIG": {"capcity": 5}}}, "default",
         r"\['CONFIG'\] is not valid for .*InMemoryChannelLayer.*capcity"),
        ({"default": {"BACKEND": MEMORY, "CONFIG": {"capacity": -1}}}, "default",
         "capacity must be a positive int"),
        ({"default": {"BACKEND": MEMORY, "CONFIG": [("capacity", 1)]}}, "default",
         r"\['CONFIG'\] must be a dict"),
        ({"default": "memory"}, "default", r"CHANNEL_LAYERS\['default'\] must be a dict"),
    ],
)
def test_misconfiguration_says_what_to_change(setting: dict, alias: str, message: str) -> None:
    with override_settings(CHANNEL_LAYERS=setting):
        with pytest.raises(ImproperlyConfigured, match=message):
            get_channel_layer(alias)


def test_channel_layers_must_be_a_dict() -> None:
    with override_settings(CHANNEL_LAYERS=[MEMORY]):
        with pytest.raises(ImproperlyConfigured, match="must be a dict of alias"):
            get_channel_layer()


def test_a_failed_build_is_not_cached() -> None:
    with layers(default={"BACKEND": "no.such.Layer"}):
        with pytest.raises(ImproperlyConfigured):
            get_channel_layer()
    with layers(default={"BACKEND": MEMORY}):
        assert isinstance(get_channel_layer(), InMemoryChannelLayer)


def test_set_channel_layer_swaps_and_returns_the_previous() -> None:
    mine = InMemoryChannelLayer(capacity=3)
    original = get_channel_layer()
    assert set_channel_layer("default", mine) is original
    assert get_channel_layer() is mine and mine.alias == "default"
    assert set_channel_layer("default", None) is mine
    assert get_channel_layer() is not mine
