"""chanlite.layers.redis_hosts without a server: the reconnect backoff."""

from __future__ import annotations

from chanlite.layers.redis_hosts import Host


def make_host() -> Host:
    # Nothing connects until a command runs: no server is needed here.
    return Host("redis://127.0.0.1:1/0", {}, RuntimeError)


def test_backoff_doubles_up_to_its_maximum():
    host = make_host()
    assert [host.note_failure(0.05, 1.0) for _ in range(7)] == [
        0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_a_host_down_for_thousands_of_attempts_still_waits_the_maximum():
    # 2 ** 1100 * 0.05 cannot be a float: before the cap this raised
    # OverflowError out of a blocking receive during a long outage.
    host = make_host()
    host.failures = 1100
    assert host.note_failure(0.05, 5.0) == 5.0
    assert host.failures == 1101
