"""Smoke test for bench/layers.py: the workloads and the CLI plumbing still work.

Why: benchmarks rot silently; this keeps every registered workload runnable
(and correct: each checks it received every message) on the in-memory layer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from chanlite.layers.memory import InMemoryChannelLayer

_PATH = Path(__file__).resolve().parents[2] / "bench" / "layers.py"
_spec = importlib.util.spec_from_file_location("bench_layers", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_layers"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


@pytest.mark.parametrize("key", sorted(bench.WORKLOADS))
def test_each_workload_runs_and_reports_positive_rates(key: str) -> None:
    rates = bench.WORKLOADS[key].run(lambda: InMemoryChannelLayer(capacity=100_000))
    # {} means "does not apply to this layer": only the cross-process
    # workloads (W3, W3BUSY, W3RING, W4) may say so for the in-memory layer,
    # and they must.
    if key.startswith(("W3", "W4")):
        assert rates == {}, f"{key} is cross-process: the in-memory layer cannot run it"
    else:
        assert rates, f"{key} must apply to the in-memory layer"
        assert all(value > 0 for value in rates.values()), rates


def test_a_lossy_layer_is_reported() -> None:
    class Lossy(InMemoryChannelLayer):
        def send(self, channel, message):  # drops every other message
            self.dropped = not getattr(self, "dropped", False)
            if not self.dropped:
                super().send(channel, message)

    with pytest.raises(SystemExit, match="W2: received"):
        bench.w2_pairs(lambda: Lossy(capacity=100_000), count=10)


def test_kw_values_are_literals_or_strings() -> None:
    assert bench.parse_kw(["capacity=10", "expiry=1.5", "name=abc", "cc={'a*': 2}"]) == {
        "capacity": 10, "expiry": 1.5, "name": "abc", "cc": {"a*": 2},
    }
    with pytest.raises(SystemExit, match="key=value"):
        bench.parse_kw(["capacity"])


def test_main_prints_a_table_of_medians(capsys) -> None:
    layer = "chanlite.layers.memory.InMemoryChannelLayer"
    assert bench.main([layer, "--kw", "capacity=100000", "--workloads", "w2",
                       "--repeat", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "W2       pairs/s" in out
    with pytest.raises(SystemExit):
        bench.main([layer, "--workloads", "W9"])


def test_the_baseline_is_timed_with_the_same_timer(monkeypatch) -> None:
    """--timer cpu must reach the baseline run: CPU against CPU, not against wall."""
    seen = []

    def fake_baseline(python, layer, kw, keys, repeat, timer_name="wall"):
        seen.append(timer_name)
        return {"W2": {"pairs/s": [1.0]}}

    monkeypatch.setattr(bench, "run_baseline", fake_baseline)
    monkeypatch.setattr(bench, "timer", bench.timer)  # main() sets the module's clock
    bench.main(["chanlite.layers.memory.InMemoryChannelLayer", "--kw", "capacity=100000",
                "--workloads", "W2", "--repeat", "1", "--warmup", "0", "--timer", "cpu",
                "--baseline-python", "/unused"])
    assert seen == ["cpu"]


def test_cross_process_workloads_run_on_a_layer_without_receive_timeout() -> None:
    """asgiref 1.1.2's receive(channels, block=False) takes no timeout: W3/W4
    must find out the layer is in-process without calling one."""

    class Asgiref112Like(InMemoryChannelLayer):
        def receive(self, channels, block=False):
            return super().receive(channels, block=block)

    for key in ("W3", "W4"):
        assert bench.WORKLOADS[key].run(lambda: Asgiref112Like(capacity=100_000)) == {}
