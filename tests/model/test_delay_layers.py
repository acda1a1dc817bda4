"""The delay service on each layer (in-memory, IPC, real Redis) with a fake clock,
and its database store across a restart of the service, in-process.

A "restart" here is a second :class:`DelayService` on the same layer and
database after the first one is abandoned mid-way (as a killed process
would be). test_rundelay.py does the same with real, SIGKILLed processes.
"""

from __future__ import annotations

import sys
import uuid

import pytest

from chanlite.delay import DELAY_CHANNEL
from chanlite.delay.models import StoredDelay
from chanlite.delay.service import DelayService
from chanlite.delay.store import DatabaseStore
from chanlite.testing import FakeClock

from ..layers.redis_server import SHARED_URL, shared_redis_unavailable

_NO_REDIS = shared_redis_unavailable()
if _NO_REDIS:
    print(f"\ntest_delay_layers: Redis cases skipped: {_NO_REDIS}", file=sys.stderr)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "ipc", "redis"])
def layer(request, clock):
    kind = request.param
    if kind == "memory":
        from chanlite.testing import make_test_layer

        yield make_test_layer(clock=clock)
    elif kind == "ipc":
        from chanlite.testing.layers import ipc_test_layer, remove_ipc_test_layer

        layer = ipc_test_layer(clock)
        yield layer
        remove_ipc_test_layer(layer)
    else:
        if _NO_REDIS:
            pytest.skip(_NO_REDIS)
        from chanlite.layers.redis import RedisChannelLayer

        layer = RedisChannelLayer(
            hosts=[SHARED_URL], prefix=f"chanlite-delay-{uuid.uuid4().hex[:10]}", clock=clock
        )
        yield layer
        layer.flush()
        layer.close()


def request(channel: str, n: int, delay_ms: float) -> dict:
    return {"channel": channel, "content": {"n": n}, "delay": delay_ms}


def drain(layer, channel: str) -> list[int]:
    out = []
    while True:
        got, content = layer.receive([channel])
        if got is None:
            return out
        out.append(content["n"])


def test_delivers_when_due_in_due_order(layer, clock):
    service = DelayService(layer)
    for n, delay in ((1, 3000), (2, 1000), (3, 2000), (4, 1000)):
        layer.send(DELAY_CHANNEL, request("out", n, delay))
    assert service.step() == 0 and service.pending == 4
    clock.advance(0.999)
    assert service.step() == 0 and drain(layer, "out") == []
    clock.advance(0.001)
    assert service.step() == 2 and drain(layer, "out") == [2, 4]  # equal due: sent in order
    clock.advance(5)
    assert service.step() == 2 and drain(layer, "out") == [3, 1]
    assert service.pending == 0


def test_request_waiting_in_the_layer_keeps_its_send_time(layer, clock):
    service = DelayService(layer)
    layer.send(DELAY_CHANNEL, request("out", 1, 4000))
    clock.advance(3)  # the service is down (or busy) for 3 s
    layer.send(DELAY_CHANNEL, request("out", 2, 4000))
    service.step()
    clock.advance(1)
    assert service.step() == 1 and drain(layer, "out") == [1]
    clock.advance(3)
    assert service.step() == 1 and drain(layer, "out") == [2]


def test_invalid_requests_are_dropped_and_counted(layer, clock):
    service = DelayService(layer)
    layer.send(DELAY_CHANNEL, {"channel": "out", "delay": 5})
    layer.send(DELAY_CHANNEL, {"channel": "out", "content": {"n": 1}, "delay": -1})
    layer.send(DELAY_CHANNEL, request("out", 2, 0))
    assert service.step() == 1
    assert (service.refused, service.accepted) == (2, 1)
    assert drain(layer, "out") == [2]


@pytest.mark.django_db(transaction=True)
def test_restart_with_the_database_store_loses_nothing_and_sends_nothing_twice(layer, clock):
    first = DelayService(layer, DatabaseStore())
    for n, delay in ((1, 0), (2, 5000), (3, 10_000)):
        layer.send(DELAY_CHANNEL, request("out", n, delay))
    assert first.step() == 1 and drain(layer, "out") == [1]
    assert StoredDelay.objects.count() == 2  # the sent one is gone from the table
    del first  # killed: its schedule in memory is gone

    layer.send(DELAY_CHANNEL, request("out", 4, 1000))  # sent while no service runs
    clock.advance(6)  # message 2 falls due while down; 4 too (sent 6 s ago, 1 s delay)
    second = DelayService(layer, DatabaseStore())
    assert second.step() == 2, "overdue messages are sent at once after the restart"
    assert sorted(drain(layer, "out")) == [2, 4]
    clock.advance(4)
    assert second.step() == 1 and drain(layer, "out") == [3]
    clock.advance(100)
    assert second.step() == 0 and drain(layer, "out") == []
    assert StoredDelay.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_services_on_one_table_send_each_message_once(layer, clock):
    """Both load the same rows (a second rundelay, or one restarted while the
    old one still ran): the claim decides who sends."""
    seed = DelayService(layer, DatabaseStore())
    for n in range(6):
        layer.send(DELAY_CHANNEL, request("out", n, 1000))
    seed.step()
    a, b = DelayService(layer, DatabaseStore()), DelayService(layer, DatabaseStore())
    a.load(), b.load()
    clock.advance(1)
    sent = seed.deliver_due(limit=2) + a.deliver_due(limit=2) + b.deliver_due() + a.deliver_due()
    assert sent == 6
    assert sorted(drain(layer, "out")) == list(range(6))


@pytest.mark.django_db(transaction=True)
def test_full_channel_keeps_the_message_in_the_store(layer, clock):
    service = DelayService(layer, DatabaseStore())
    capacity = layer.capacity_for("tight")
    for _ in range(capacity):
        layer.send("tight", {"n": -1})
    layer.send(DELAY_CHANNEL, request("tight", 99, 0))
    assert service.step() == 0
    assert StoredDelay.objects.count() == 1, "a refused message must stay stored"
    drain(layer, "tight")
    clock.advance(service.retry_delay)
    assert service.step() == 1 and drain(layer, "tight") == [99]
    assert StoredDelay.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_store_failure_drops_the_request_with_a_log(layer, clock, caplog, monkeypatch):
    from django.db import OperationalError

    store = DatabaseStore()

    def broken(*args):
        raise OperationalError("database is down")

    monkeypatch.setattr(store, "add", broken)
    service = DelayService(layer, store)
    layer.send(DELAY_CHANNEL, request("out", 1, 0))
    layer.send(DELAY_CHANNEL, request("out", 2, 0))
    assert service.step() == 0
    assert "could not store a delayed message for 'out'; it is lost" in caplog.text
    assert service.refused == 2 and service.pending == 0


def test_store_and_layer_failures_at_delivery_keep_the_message(clock, monkeypatch, caplog):
    """A claim that fails (database down) or a send that fails (layer down) is
    tried again after error_backoff: nothing is lost, nothing sent twice."""
    from chanlite.delay.store import MemoryStore
    from chanlite.testing import make_test_layer

    layer = make_test_layer(clock=clock)
    store = MemoryStore()
    service = DelayService(layer, store)
    layer.send(DELAY_CHANNEL, request("out", 1, 0))
    service.take_requests()

    real_claim = store.claim
    monkeypatch.setattr(store, "claim", lambda key: (_ for _ in ()).throw(OSError("db down")))
    assert service.deliver_due() == 0 and service.pending == 1
    assert "could not remove a due message from the store" in caplog.text
    monkeypatch.setattr(store, "claim", real_claim)

    real_send = layer.send
    monkeypatch.setattr(layer, "send", lambda *a: (_ for _ in ()).throw(OSError("layer down")))
    clock.advance(service.error_backoff)
    assert service.deliver_due() == 0 and service.pending == 1
    assert "could not send a delayed message to 'out'" in caplog.text
    monkeypatch.setattr(layer, "send", real_send)

    assert service.deliver_due() == 0, "retried before error_backoff"
    clock.advance(service.error_backoff)
    assert service.deliver_due() == 1 and drain(layer, "out") == [1]
    assert service.pending == 0
