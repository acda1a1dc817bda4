"""``manage.py rundelay`` as a real process on the IPC layer and on real Redis.

The test and the subprocess share the layer (same IPC prefix / Redis prefix)
and a SQLite file (the delay table). The restart test SIGKILLs the delay
process with messages stored and not yet due, sends another request while
no delay process runs, starts a new one, and accounts for every message:
each delivered exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from chanlite.delay import DELAY_CHANNEL
from chanlite.testing import eventually

from ..layers.redis_server import SHARED_URL, shared_redis_unavailable
from .process_output import Output

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
OUT = "delay-test.out"
TABLE = "chanlite_delay_storeddelay"


class Deployment:
    """One layer + one delay table shared by the test and rundelay processes."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.db = tmp_path / "delay.sqlite3"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.model.delay_settings",
                    "CHANLITE_TEST_DELAY_DB": str(self.db), "CHANLITE_TEST_DELAY_LAYER": kind,
                    "PYTHONPATH": str(ROOT)}
        tag = "cld-" + uuid.uuid4().hex[:10]
        if kind == "ipc":
            from chanlite.layers.ipc import IPCChannelLayer

            self.env["CHANLITE_TEST_IPC_PREFIX"] = tag
            # the sizes of tests/model/worker_settings.py: every process must agree
            self.layer = IPCChannelLayer(prefix=tag, memory=4 * 1024 * 1024,
                                         max_message_size=64 * 1024)
        else:
            from chanlite.layers.redis import RedisChannelLayer

            self.env.update(CHANLITE_TEST_REDIS_URL=SHARED_URL, CHANLITE_TEST_REDIS_PREFIX=tag)
            self.layer = RedisChannelLayer(hosts=[SHARED_URL], prefix=tag)
        self.procs: list[subprocess.Popen] = []

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def rundelay(self) -> tuple[subprocess.Popen, Output]:
        proc = subprocess.Popen([sys.executable, "-m", "django", "rundelay"], cwd=ROOT,
                                env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc, Output(proc.stdout, "rundelay", WAIT)

    def stored(self) -> int:
        with sqlite3.connect(self.db, timeout=WAIT) as conn:
            return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]

    def wait_stored(self, count: int) -> None:
        eventually(lambda: self.stored() == count,
                   lambda: f"rundelay to store {count} message(s) (table holds {self.stored()})",
                   timeout=WAIT, interval=0.02)

    def request(self, n: int, delay_ms: int) -> None:
        self.layer.send(DELAY_CHANNEL, {"channel": OUT, "content": {"n": n}, "delay": delay_ms})

    def next_out(self) -> int:
        channel, content = self.layer.receive([OUT], block=True, timeout=WAIT)
        assert channel == OUT, f"no delayed message arrived within {WAIT}s"
        return content["n"]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(WAIT)
            proc.stdout.close()
        self.layer.flush()
        self.layer.close()
        if self.kind == "ipc":
            type(self.layer).remove_prefix(self.env["CHANLITE_TEST_IPC_PREFIX"])


def _deploy(kind: str, tmp_path: Path):
    if kind == "redis":
        reason = shared_redis_unavailable()
        if reason:
            print(f"\nrundelay Redis case skipped: {reason}", file=sys.stderr)
            pytest.skip(reason)
    deployment = Deployment(kind, tmp_path)
    try:
        migrated = deployment.manage("migrate", "chanlite_delay")
        assert migrated.returncode == 0, migrated.stderr
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(params=["ipc", "redis"])
def deployment(request, tmp_path):
    yield from _deploy(request.param, tmp_path)


@pytest.fixture
def ipc_deployment(tmp_path):
    """Validation does not depend on the layer: one is enough."""
    yield from _deploy("ipc", tmp_path)


def test_restart_of_the_delay_process_loses_nothing_and_sends_nothing_twice(deployment):
    proc, output = deployment.rundelay()
    output.wait_for("listening on asgi.delay")
    deployment.request(0, 0)
    assert deployment.next_out() == 0  # served while running, and gone from the table
    for n in (1, 2, 3):
        deployment.request(n, 3000)
    deployment.wait_stored(3)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(WAIT)

    deployment.request(4, 0)  # sent while no delay process runs: waits in the layer
    assert deployment.layer.receive([OUT]) == (None, None), "delivered with no delay process"
    assert deployment.stored() == 3

    proc, output = deployment.rundelay()
    output.wait_for("3 stored message(s)")
    got = sorted(deployment.next_out() for _ in range(4))
    assert got == [1, 2, 3, 4], f"lost or duplicated: {got}"
    deployment.wait_stored(0)
    assert deployment.layer.receive([OUT]) == (None, None), "a message was delivered twice"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(WAIT) == 0
    output.wait_for("Delay: stopped")


def test_invalid_requests_are_logged_and_the_process_keeps_serving(ipc_deployment):
    deployment = ipc_deployment
    proc, output = deployment.rundelay()
    output.wait_for("listening on asgi.delay")
    layer = deployment.layer
    layer.send(DELAY_CHANNEL, {"content": {}, "delay": 1})
    layer.send(DELAY_CHANNEL, {"channel": OUT, "content": {"n": 0}, "delay": -1})
    layer.send(DELAY_CHANNEL, {"channel": "not valid!", "content": {}, "delay": 1})
    layer.send(DELAY_CHANNEL, {"channel": OUT, "content": "text", "delay": 1})
    deployment.request(7, 0)
    assert deployment.next_out() == 7
    assert proc.poll() is None, "rundelay died on a bad request"
    output.wait_for("'delay' is negative")
    assert output.text.count("dropped an invalid asgi.delay request") == 4
    proc.send_signal(signal.SIGINT)
    assert proc.wait(WAIT) == 0


def test_rundelay_without_the_table_says_to_migrate(tmp_path):
    deployment = Deployment("ipc", tmp_path)
    try:
        done = deployment.manage("rundelay")
        assert done.returncode != 0
        assert "migrate chanlite_delay" in done.stderr
    finally:
        deployment.close()


def test_rundelay_refuses_the_in_memory_layer():
    with pytest.raises(CommandError, match="in-memory layer"):
        call_command("rundelay")
