"""``manage.py runworker``: argument errors, and a real subprocess drained by SIGTERM.

The subprocess and this test share messages through the IPC layer
(tests/model/worker_settings.py), so the test can hold a consumer in flight.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

import chanlite.layers.ipc as ipc  # a core layer: an import error must fail, not skip

ROOT = Path(__file__).resolve().parents[2]
WAIT = 15.0


def read_line_containing(proc: subprocess.Popen, text: str, timeout: float = WAIT) -> str:
    """The first stdout line containing ``text``; fail clearly after ``timeout``."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen = []
    try:
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return line
    finally:
        sel.close()
    stderr = ""
    if proc.poll() is not None:
        stderr = proc.stderr.read()
    pytest.fail(f"runworker never printed {text!r}; stdout={seen!r} stderr={stderr[-2000:]!r}")


@pytest.fixture
def ipc_prefix():
    prefix = "clt-" + uuid.uuid4().hex[:12]
    yield prefix
    ipc.remove_prefix(prefix)


@pytest.fixture
def runworker(ipc_prefix):
    procs = []

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.model.worker_settings",
               "CHANLITE_TEST_IPC_PREFIX": ipc_prefix, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture
def layer(ipc_prefix):
    layer = ipc.IPCChannelLayer(
        prefix=ipc_prefix, memory=4 * 1024 * 1024, max_message_size=64 * 1024
    )
    yield layer
    layer.close()


def events(layer, timeout=WAIT):
    channel, content = layer.receive(["worker-test.events"], block=True, timeout=timeout)
    assert channel is not None, f"no event from the worker within {timeout}s"
    return content


def test_sigterm_drains_in_flight_consumer_and_exits_0(runworker, layer):
    proc = runworker("--workers", "2", "--drain-timeout", "20")
    read_line_containing(proc, "listening on")
    layer.send("worker-test.slow", {"n": 1})
    assert events(layer) == {"started": 1}
    proc.send_signal(signal.SIGTERM)
    read_line_containing(proc, "waiting for 1 running consumer")
    # stopped workers take no new message: this one stays queued for the next worker
    layer.send("worker-test.echo", {"n": 2})
    assert proc.poll() is None, "runworker exited with a consumer still running"
    layer.send("worker-test.release", {})
    assert events(layer) == {"done": 1, "released": True}, "in-flight consumer's reply lost"
    assert proc.wait(WAIT) == 0
    assert "every running consumer finished" in proc.stdout.read()
    assert layer.receive(["worker-test.echo"]) == ("worker-test.echo", {"n": 2})


def test_failing_consumer_is_logged_and_worker_continues(runworker, layer):
    proc = runworker("--workers", "1")
    read_line_containing(proc, "listening on")
    layer.send("worker-test.fail", {"n": 1})
    layer.send("worker-test.echo", {"n": 2})
    # receive over several channels is fair, not FIFO across them: either may run first
    got = [events(layer), events(layer)]
    assert sorted(got, key=str) == [{"echo": 2}, {"failing": 1}]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(WAIT) == 0
    stderr = proc.stderr.read()
    assert "RuntimeError: task 1 failed on purpose" in stderr and "Traceback" in stderr
    assert layer.receive(["worker-test.events"]) == (None, None), "failed consumer's send escaped"


def test_only_and_exclude_channels(runworker, layer):
    proc = runworker("--workers", "1", "--only-channels", "worker-test.*",
                     "--exclude-channels", "worker-test.slow", "--exclude-channels", "*.fail")
    line = read_line_containing(proc, "listening on")
    assert line.strip().endswith("listening on worker-test.echo")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--layer", "nope"], "no channel layer 'nope'"),
        (["--layer", "norouting"], "has no 'ROUTING'"),
        (["--layer", "memory"], "in-memory layer"),
        (["--only-channels", "zzz"], "listen on no channel"),
        (["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_command_errors_are_clear(args, error, settings, ipc_prefix):
    from chanlite.layers import reset_channel_layers
    from chanlite.routing import reset_routers
    from tests.model import worker_settings

    settings.CHANNEL_LAYERS = {
        **worker_settings.CHANNEL_LAYERS,
        "default": {
            **worker_settings.CHANNEL_LAYERS["default"],
            "CONFIG": {**worker_settings.CHANNEL_LAYERS["default"]["CONFIG"], "prefix": ipc_prefix},
        },
    }
    reset_channel_layers()
    reset_routers()
    try:
        with pytest.raises(CommandError, match=error):
            call_command("runworker", *args)
    finally:
        reset_channel_layers()
        reset_routers()
        ipc.remove_prefix("chanlite-test-unused")


def test_rolling_restart_loses_no_queued_message(runworker, layer):
    """Deploying new code = restart workers one at a time; messages wait in the layer."""
    old = runworker("--workers", "2")
    read_line_containing(old, "listening on")
    for n in range(10):
        layer.send("worker-test.echo", {"n": n})
    seen = [events(layer)["echo"]]  # the old worker is consuming
    old.send_signal(signal.SIGTERM)
    assert old.wait(WAIT) == 0
    for n in range(10, 20):  # sent while no worker runs at all
        layer.send("worker-test.echo", {"n": n})
    new = runworker("--workers", "2")
    read_line_containing(new, "listening on")
    while len(seen) < 20:
        seen.append(events(layer)["echo"])
    assert sorted(seen) == list(range(20)), f"lost or duplicated: {sorted(seen)}"
    new.send_signal(signal.SIGTERM)
    assert new.wait(WAIT) == 0
    assert layer.receive(["worker-test.events", "worker-test.echo"]) == (None, None)
