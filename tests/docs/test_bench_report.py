"""docs/performance.md's generated tables match their recorded runs."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

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


TABLE = {
    "kind": "table", "title": "Layers against peers",
    "command": "python bench/layers.py --peers --rounds 3", "date": "2026-12-01T04:30:00Z",
    "machine": "2 cores, Linux x86_64", "load_before": [1.24, 1, 1], "load_after": [1.5, 1, 1],
    "ours": "chanlite", "columns": ["chanlite", "peer A", "peer B"],
    "rows": [
        # higher is better: the best other is the *largest* median (peer B, 400)
        {"figure": "fan-out", "unit": "msgs/s", "higher_is_better": True,
         "values": {"chanlite": [100.0, 300.0, 200.0], "peer A": [50.0, 150.0, 100.0],
                    "peer B": [400.0, 390.0, 410.0]}},
        # lower is better: the best other is the *smallest* median (peer A, 30)
        {"figure": "p50", "unit": "µs", "higher_is_better": False,
         "values": {"chanlite": [10.0, 12.0, 11.0], "peer A": [30.0, 31.0, 29.0],
                    "peer B": [60.0, 61.0, 59.0]}},
        # a figure only one peer has: the others' cells are a dash
        {"figure": "stream", "unit": "msgs/s", "higher_is_better": True,
         "values": {"chanlite": [5.0], "peer B": [4.0]}},
    ],
    "notes": ["peer versions here"],
}


def test_a_side_by_side_table_shows_medians_and_oriented_ratios() -> None:
    text = report.render_table(TABLE)
    assert text.startswith("**Layers against peers** — `python bench/layers.py --peers --rounds 3`"
                           ", 2026-12-01T04:30:00Z, 2 cores, Linux x86_64, load average 1.2 "
                           "before / 1.5 after (1-minute). Medians of 3 interleaved rounds")
    assert "| figure | unit | chanlite | peer A | peer B | ratio |" in text
    # 200 / 400 (best other by median, not peer A's 100): ours behind
    assert "| fan-out | msgs/s (higher is better) | 200 | 100 | 400 | 0.50x vs peer B |" in text
    # latency: 30 / 11 -> ours ahead, against the *lowest* other
    assert "| p50 | µs (lower is better) | 11.0 | 30.0 | 60.0 | 2.73x vs peer A |" in text
    assert "| stream | msgs/s (higher is better) | 5.00 | — | 4.00 | 1.25x vs peer B |" in text
    assert text.rstrip().endswith("- peer versions here")


def test_a_table_run_is_rendered_in_its_region(tmp_path) -> None:
    (tmp_path / "peers.json").write_text(json.dumps(TABLE))
    page = "<!-- bench-report: peers.json -->\n<!-- /bench-report -->\n"
    new = report.regenerate(page, root=tmp_path)
    assert "| p50 | µs (lower is better) | 11.0 |" in new
    assert report.regenerate(new, root=tmp_path) == new


def test_a_malformed_table_says_what_is_wrong() -> None:
    bad = json.loads(json.dumps(TABLE))
    bad["rows"][0]["values"]["peer C"] = [1.0]
    with pytest.raises(SystemExit, match=r"values for \['peer C'\], which are not in 'columns'"):
        report.render_table(bad, "bench/results/x.json")
    del bad["load_after"]
    with pytest.raises(SystemExit, match=r"bench/results/x.json: missing 'load_after'"):
        report.render_table(bad, "bench/results/x.json")
    bad = dict(TABLE, ours="us")
    with pytest.raises(SystemExit, match="'ours' \\('us'\\) is not one of the columns"):
        report.render_table(bad)


def test_a_cpu_run_shows_microseconds_per_operation(tmp_path) -> None:
    text = report.render_per_op(RUN)
    assert "| workload | operation | InMemoryChannelLayer | asgiref 1.1.2 |" in text
    assert "| W2 | pairs | 5,000.0 | 10,000.0 |" in text  # 1e6 / median rate (200/s, 100/s)
    assert "| W4 | p50 | 10.0 | 30.0 |" in text  # already per operation
    (tmp_path / "run.json").write_text(json.dumps(dict(RUN, timer="wall")))
    with pytest.raises(SystemExit, match="needs a --timer cpu run, not 'wall'"):
        report.regenerate("<!-- bench-report: run.json per-op -->\n<!-- /bench-report -->\n",
                          root=tmp_path)


def test_the_page_leads_with_the_peers_table_then_cpu_per_operation() -> None:
    text = report.DOC.read_text()
    regions = report.REGION.findall(text)
    assert regions, "docs/performance.md has no generated tables"
    leading = [region[1] for region in regions[:2]]
    expected = ["bench/results/server-peers.json", "bench/results/layers-peers.json"]
    assert leading == expected, leading
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Against the peers", "## CPU per operation"], headings[:3]
