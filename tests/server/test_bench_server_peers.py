"""bench/server.py --peers stays runnable and writes the shared "table" JSON
that bench/report.py renders (one real round of one workload on chanlite)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report_peers",
                                                  ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_peers_run_records_a_table_the_report_renders(tmp_path: Path) -> None:
    record = tmp_path / "server-peers.json"
    done = subprocess.run(
        [sys.executable, "bench/server.py", "--peers", "--servers", "chanlite", "--only", "echo1",
         "--rounds", "1", "--record", str(record)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    table = json.loads(record.read_text())
    assert table["kind"] == "table" and table["ours"] == "chanlite"
    assert table["columns"] == ["chanlite"]
    rows = {row["figure"]: row for row in table["rows"]}
    p50 = rows["WS echo, 1 client, p50"]
    assert p50["unit"] == "ms" and p50["higher_is_better"] is False
    assert len(p50["values"]["chanlite"]) == 1 and 0 < p50["values"]["chanlite"][0] < 1000
    cpu = rows["server CPU per echo, 1 client"]["values"]["chanlite"][0]
    assert cpu > 0, "the server's CPU per echo was not measured"
    text = _report().render_table(table, "server-peers.json")
    assert "| WS echo, 1 client, p50 | ms (lower is better) |" in text


def test_an_unknown_server_is_refused_with_the_known_ones() -> None:
    done = subprocess.run(
        [sys.executable, "bench/server.py", "--peers", "--servers", "nginx", "--only", "echo1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unknown server 'nginx'" in done.stderr and "waitress" in done.stderr
