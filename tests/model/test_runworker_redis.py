"""``manage.py runworker`` on the Redis layer, across a Redis restart.

The worker runs as a real subprocess against a throw-away ``redis-server``
(started here on a free port, stopped at the end): it must serve messages,
log and survive the server going away, and serve again once it is back —
without any worker code knowing about Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..layers.redis_server import RedisServer, redis_server_missing
from .process_output import Output

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0

_REASON = redis_server_missing()
if _REASON:
    print(f"\nskipping runworker-on-Redis test: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

from chanlite.layers.redis import RedisChannelLayer  # noqa: E402


def test_runworker_survives_a_redis_restart():
    server = RedisServer().start()
    prefix = "worker-restart"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.model.redis_worker_settings",
           "CHANLITE_TEST_REDIS_URL": server.url, "CHANLITE_TEST_REDIS_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", "--workers", "2"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    layer = RedisChannelLayer(hosts=[server.url], prefix=prefix)
    try:
        output = Output(proc.stdout, "the worker", WAIT)
        output.wait_for("listening on")
        layer.send("worker-test.echo", {"n": 1})
        assert layer.receive(["worker-test.events"], block=True, timeout=WAIT) == (
            "worker-test.events", {"echo": 1})

        server.stop()
        output.wait_for("reconnecting")  # logged by the layer in the worker
        server.start()
        assert proc.poll() is None, "runworker died when Redis went away"
        layer.send("worker-test.echo", {"n": 2})
        assert layer.receive(["worker-test.events"], block=True, timeout=WAIT) == (
            "worker-test.events", {"echo": 2})
        output.wait_for("reachable again")
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(WAIT)
            layer.flush()
            layer.close()
            server.stop()
