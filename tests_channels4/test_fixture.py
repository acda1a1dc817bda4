"""The Channels 4 testing helper: a fresh, shared, cleaned-up IPC layer per test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from channels.layers import get_channel_layer
from django.conf import settings

from chanlite.channels4 import IPCChannelLayer
from chanlite.channels4.pytest_plugin import PREFIX_ENV, fresh_ipc_layers


def test_fresh_prefix_shared_with_child_processes_and_removed_after():
    before = getattr(settings, "CHANNEL_LAYERS", None)
    with fresh_ipc_layers() as first:
        layer = get_channel_layer()
        assert isinstance(layer, IPCChannelLayer) and layer.prefix == first.prefix
        assert os.environ[PREFIX_ENV] == first.prefix
        # a process started by the test joins the same layer through the env
        code = (
            "import asyncio, os\n"
            "from chanlite.channels4 import IPCChannelLayer\n"
            "layer = IPCChannelLayer(prefix=os.environ['CHANLITE_IPC_PREFIX'])\n"
            "asyncio.run(layer.send('from-child', {'type': 'hello'}))\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert asyncio.run(asyncio.wait_for(layer.receive("from-child"), 10)) == {"type": "hello"}
        assert os.path.exists(f"/dev/shm/chanlite.{first.prefix}")
    assert not os.path.exists(f"/dev/shm/chanlite.{first.prefix}")  # removed
    assert layer.ipc._store is None  # closed
    assert PREFIX_ENV not in os.environ
    assert getattr(settings, "CHANNEL_LAYERS", None) == before
    with fresh_ipc_layers() as second:
        assert second.prefix != first.prefix
        assert get_channel_layer() is not layer
