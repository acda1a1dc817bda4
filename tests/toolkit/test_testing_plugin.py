"""The pytest plugin seen from outside: a fresh pytest process (pytester) with
no Django settings and no pytest-django, and the ``--chanlite-layer`` option
running a test on both layers and leaving nothing in /dev/shm."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]

INNER = '''
import json
import pathlib

import pytest

from chanlite.routing import route
from chanlite.testing import run_until_idle


def connect(message):
    message.reply_channel.send({"accept": True})


def receive(message):
    data = json.loads(message["text"])
    message.reply_channel.send({"text": json.dumps({"doubled": data["n"] * 2})})


def test_no_django_settings_needed(routes, ws_client, channel_layer, clock):
    from django.conf import settings

    assert not settings.configured
    routes([route("websocket.connect", connect), route("websocket.receive", receive)])
    ws_client.connect("/")
    ws_client.send("websocket.receive", text={"n": 21})
    assert run_until_idle() == 1
    assert ws_client.receive() == {"doubled": 42}
    prefix = getattr(channel_layer, "prefix", None)
    if prefix:
        pathlib.Path("prefixes.txt").open("a").write(prefix + "\\n")
'''


@pytest.fixture(autouse=True)
def no_settings(monkeypatch):
    """The pytest subprocesses inherit this: no Django settings module."""
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider", *args,
                                         timeout=120)


def test_without_django_settings_on_memory_and_ipc_leaving_nothing_in_shm(pytester):
    """One subprocess proves three things (subprocesses are slow): no settings
    and no pytest-django needed; --chanlite-layer parametrizes; IPC cleanup."""
    result = _run(pytester, "--chanlite-layer=memory", "--chanlite-layer=ipc", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*layer-memory*PASSED*", "*layer-ipc*PASSED*"])
    prefixes = (pytester.path / "prefixes.txt").read_text().split()
    assert len(prefixes) == 1
    left = [n for n in os.listdir("/dev/shm") if prefixes[0] in n]
    assert left == [], f"the IPC test layer left {left} in /dev/shm"


def test_unknown_layer_kind_is_a_usage_error(pytester):
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.chanlite_layers("carrier-pigeon")
def test_x(channel_layer):
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:django", "-p", "no:cacheprovider",
                                           timeout=120)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*chanlite_layers takes some of*carrier-pigeon*"])
