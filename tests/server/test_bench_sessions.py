"""Smoke test for bench/sessions.py: both session workloads still run.

Why: benchmarks rot silently; each workload asserts its messages arrived,
so a change that breaks the session path fails here, not in a later A/B.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "sessions.py"
_spec = importlib.util.spec_from_file_location("bench_sessions", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_sessions"] = bench
_spec.loader.exec_module(bench)  # type: ignore[union-attr]


def test_both_workloads_run_on_this_checkout(capsys) -> None:
    figures = bench.main(["--ops", "200", "--rounds", "1"])
    assert bench.SEAM, "this checkout's Connection takes a session factory"
    assert set(figures) == {"http_us", "ws_us"} and all(v > 0 for v in figures.values())
    assert capsys.readouterr().out.startswith("after the seam: http_us ")
