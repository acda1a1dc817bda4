"""docs/performance.md's generated tables match their recorded runs."""

from __future__ import annotations

import importlib.util
import json
import sys

from .blocks import ROOT

_spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report
_spec.loader.exec_module(report)  # type: ignore[union-attr]

RUN = {
    "command": "python bench/layers.py X --timer cpu", "date": "2026-12-01 00:00 UTC",
    "python": "3.11.7", "machine": "Linux x86_64, 2 cpus", "timer": "cpu",
    "load_average": {"before": [3.04, 1, 1], "after": [3.8, 1, 1]},
    "layer": "chanlite.layers.memory.InMemoryChannelLayer",
    "baseline": "asgiref.inmemory.ChannelLayer",
    "results": {"W2": {"pairs/s": [100.0, 300.0, 200.0]}, "W4": {"p50_us": [10.0]}},
    "baseline_results": {"W2": {"pairs/s": [50.0, 100.0, 150.0]}, "W4": {"p50_us": [30.0]}},
}


def test_performance_tables_match_the_recorded_runs() -> None:
    assert report.main(["--check"]) == 0, "run python bench/report.py"
    assert "bench-report: bench/results/memory-vs-asgiref112-cpu.json" in report.DOC.read_text()


def test_a_table_shows_provenance_medians_and_ratios() -> None:
    text = report.render(RUN)
    assert text.startswith(
        "`python bench/layers.py X --timer cpu` — 2026-12-01 00:00 UTC, cpu time"
    )
    assert "load average 3.0 before / 3.8 after" in text
    assert "| W2 | pairs/s | 200 | 100 | 2.00x |" in text  # medians, ours / baseline
    assert "| W4 | p50_us | 10.0 | 30.0 | 3.00x |" in text  # latency: baseline / ours


def test_a_changed_run_makes_the_page_stale(tmp_path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(RUN))
    page = "before\n<!-- bench-report: run.json -->\nold table\n<!-- /bench-report -->\nafter\n"
    new = report.regenerate(page, root=tmp_path)
    assert "old table" not in new and "| W2 | pairs/s | 200 |" in new
    assert new.startswith("before\n") and new.endswith("<!-- /bench-report -->\nafter\n")
    assert report.regenerate(new, root=tmp_path) == new
