"""``manage.py chanlite_ipc``: stats, check, flush and remove of an IPC segment."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from .ipc_helpers import leftovers


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("chanlite_ipc", *args, stdout=out)
    return out.getvalue()


def test_stats_check_flush_remove(make_ipc):
    layer = make_ipc()
    layer.send("orders", {"n": 1})
    layer.send("orders", {"n": 2})
    layer.group_add("room", "orders")
    stats = run("--prefix", layer.prefix, "--stats")
    assert "messages_pending    2" in stats
    assert "channel orders: 2 queued" in stats and "group room: 1 members" in stats
    assert "is consistent" in run("--prefix", layer.prefix, "--check")
    assert "flushed" in run("--prefix", layer.prefix, "--flush")
    assert layer.receive(["orders"]) == (None, None)
    layer.close()
    assert "removed /dev/shm/chanlite." in run("--prefix", layer.prefix, "--remove")
    assert leftovers(layer.prefix) == []


def test_missing_segment_is_not_created(ipc_prefix):
    with pytest.raises(CommandError, match="no IPC segment"):
        run("--prefix", ipc_prefix, "--stats")
    assert leftovers(ipc_prefix) == []
    assert "did not exist" in run("--prefix", ipc_prefix, "--remove")


def test_layer_alias_must_be_an_ipc_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer"}
    }
    with pytest.raises(CommandError, match="not the IPC layer"):
        run("--stats")


def test_an_action_is_required():
    with pytest.raises(CommandError, match="one of the arguments"):
        run("--prefix", "x")
