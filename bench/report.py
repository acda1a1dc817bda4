"""Regenerate the benchmark tables of docs/performance.md from recorded runs.

    python bench/report.py           # rewrite the tables in docs/performance.md
    python bench/report.py --check   # exit 1 if a table differs from its JSON

Why: a figure typed by hand drifts from the run it came from. A run of
``bench/layers.py ... --record bench/results/NAME.json`` keeps every rate,
the command, the date and the load average; in docs/performance.md a table
sits between

    <!-- bench-report: bench/results/NAME.json -->
    ... generated ...
    <!-- /bench-report -->

(``<!-- bench-report: bench/results/NAME.json per-op -->`` shows a
``--timer cpu`` run as CPU microseconds per operation instead) and this
script writes it (medians and ratios computed here, with the command,
date, timer and load average above the table). Two formats: the
one ``bench/layers.py --record`` writes (one layer against one baseline),
and the generic ``"kind": "table"`` of side-by-side comparisons (peers,
before/after; see :func:`render_table`). The suite runs
``--check`` (tests/docs/test_bench_report.py), so prose and numbers cannot
disagree without CI saying so.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
REGION = re.compile(r"(?P<open><!-- bench-report: (?P<path>[^ ]+)(?: (?P<mode>per-op))? -->\n)"
                    r"(?P<body>.*?)(?P<close><!-- /bench-report -->)", re.S)
BASELINE_NAMES = {"asgiref.inmemory.ChannelLayer": "asgiref 1.1.2",
                  "redis": "bare redis-py client", "redis-raw": "bare redis-py Connection"}


def _fmt(value: float, metric: str) -> str:
    return f"{value:,.1f}" if metric.endswith("_us") else f"{value:,.0f}"


def _sides(run: dict) -> tuple[str, Any, str]:
    """The measured layer's short name, the baseline's results and its name."""
    layer = run["layer"].rsplit(".", 1)[-1]
    baseline = run.get("baseline") or ""
    return layer, run.get("baseline_results"), BASELINE_NAMES.get(baseline, baseline)


def _provenance(run: dict, timer: str, tail: str) -> str:
    """The line above a layer run's table: command, date, timer, load, ``tail``."""
    load = run["load_average"]
    return (f"`{run['command']}` — {run['date']}, {timer}, Python {run['python']}, "
            f"{run['machine']}, load average {load['before'][0]:.1f} before / "
            f"{load['after'][0]:.1f} after (1-minute). {tail}")


def render(run: dict) -> str:
    """The Markdown for one recorded run: its provenance, then the table."""
    layer, base, base_name = _sides(run)
    rounds = max(len(v) for m in run["results"].values() for v in m.values())
    lines = [_provenance(run, f"{run['timer']} time", f"Medians of {rounds} rounds."), ""]
    header = f"| workload | metric | {layer} |"
    rule = "| --- | --- | ---: |"
    if base:
        header += f" {base_name} | ratio |"
        rule += " ---: | ---: |"
    lines += [header, rule]
    for key, metrics in run["results"].items():
        for metric, values in metrics.items():
            median = statistics.median(values)
            row = f"| {key} | {metric} | {_fmt(median, metric)} |"
            if base and metric in base.get(key, {}):
                other = statistics.median(base[key][metric])
                ratio = other / median if metric.endswith("_us") else median / other
                row += f" {_fmt(other, metric)} | {ratio:.2f}x |"
            elif base:
                row += " | |"
            lines.append(row)
    return "\n".join(lines) + "\n"


def render_per_op(run: dict, where: str = "run") -> str:
    """CPU microseconds per operation from a ``--timer cpu`` run (region mode ``per-op``).

    Why: a rate measured in the process's CPU time inverts to the CPU one
    operation costs, the figure that stays comparable on a loaded machine
    (wall-time rates mostly measure the neighbours). ``..._us`` metrics are
    per-operation already; other rates become ``1e6 / median``.
    """
    if run.get("timer") != "cpu":
        raise SystemExit(f"{where}: a per-op table needs a --timer cpu run, "
                         f"not {run.get('timer')!r}")
    layer, base, base_name = _sides(run)
    lines = [
        _provenance(run, "CPU time", "µs of CPU per operation, from the median rate."),
        "",
        f"| workload | operation | {layer} |" + (f" {base_name} |" if base else ""),
        "| --- | --- | ---: |" + (" ---: |" if base else ""),
    ]

    def per_op(values: list[float], metric: str) -> str:
        median = statistics.median(values)
        return f"{median if metric.endswith('_us') else 1e6 / median:,.1f}"

    for key, metrics in run["results"].items():
        for metric, values in metrics.items():
            operation = metric.removesuffix("/s").removesuffix("_us").replace("per_msg", "message")
            row = f"| {key} | {operation} | {per_op(values, metric)} |"
            if base:
                theirs = base.get(key, {}).get(metric)
                row += f" {per_op(theirs, metric) if theirs else ''} |"
            lines.append(row)
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Three significant figures' worth: 140,213 / 323 / 48.3 / 0.41."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _need(data: dict, key: str, where: str) -> Any:
    if key not in data:
        raise SystemExit(f"{where}: missing {key!r} (see the 'table' format in bench/report.py)")
    return data[key]


def render_table(run: dict, where: str = "table") -> str:
    """The Markdown for one ``"kind": "table"`` run (any side-by-side comparison).

    Format (written by ``bench/layers.py --peers``, ``bench/server.py --peers``
    and before/after runs)::

        {"kind": "table", "title": ..., "command": ..., "date": ...,
         "machine": ..., "load_before": [1m, 5m, 15m], "load_after": [...],
         "ours": "chanlite", "columns": ["chanlite", "waitress", ...],
         "rows": [{"figure": ..., "unit": "req/s", "higher_is_better": true,
                   "values": {"chanlite": [one number per round], ...}}],
         "notes": ["optional lines shown under the table"]}

    Each cell is the median of its rounds; the ratio compares ``ours`` with
    the best *other* column of the row, oriented so that >= 1.00x always
    means ours is ahead (other / ours for lower-is-better figures).
    """
    ours, columns = _need(run, "ours", where), _need(run, "columns", where)
    if ours not in columns:
        raise SystemExit(f"{where}: 'ours' ({ours!r}) is not one of the columns {columns}")
    before, after = _need(run, "load_before", where), _need(run, "load_after", where)
    rows = _need(run, "rows", where)
    rounds = max((len(v) for row in rows for v in _need(row, "values", where).values()),
                 default=0)
    lines = [
        f"**{_need(run, 'title', where)}** — `{_need(run, 'command', where)}`, "
        f"{_need(run, 'date', where)}, {_need(run, 'machine', where)}, load average "
        f"{before[0]:.1f} before / {after[0]:.1f} after (1-minute). Medians of {rounds} "
        f"interleaved rounds; ratio = {ours} against the best other column "
        f"(≥ 1.00x: {ours} ahead).",
        "",
        "| figure | unit | " + " | ".join(columns) + " | ratio |",
        "| --- | --- |" + " ---: |" * len(columns) + " --- |",
    ]
    for row in rows:
        values = _need(row, "values", where)
        unknown = set(values) - set(columns)
        if unknown:
            raise SystemExit(f"{where}: row {row.get('figure')!r} has values for "
                             f"{sorted(unknown)}, which are not in 'columns'")
        higher = _need(row, "higher_is_better", where)
        medians = {column: statistics.median(v) for column, v in values.items() if v}
        cells = [_num(medians[c]) if c in medians else "—" for c in columns]
        others = {c: m for c, m in medians.items() if c != ours}
        ratio = ""
        if ours in medians and others:
            best = (max if higher else min)(others, key=others.__getitem__)
            mine, theirs = medians[ours], others[best]
            value = mine / theirs if higher else theirs / mine
            ratio = f"{value:.2f}x vs {best}"
        unit = f"{_need(row, 'unit', where)} ({'higher' if higher else 'lower'} is better)"
        lines.append(f"| {_need(row, 'figure', where)} | {unit} | " + " | ".join(cells)
                     + f" | {ratio} |")
    notes = run.get("notes") or []
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def regenerate(text: str, root: Path = ROOT) -> str:
    """``text`` with every bench-report region rewritten from its JSON."""

    def replace(match: re.Match) -> str:
        path = root / match.group("path")
        if not path.exists():
            raise SystemExit(f"{DOC.name}: {match.group('path')} does not exist")
        run = json.loads(path.read_text())
        if run.get("kind") == "table":
            body = render_table(run, match.group("path"))
        elif match.group("mode") == "per-op":
            body = render_per_op(run, match.group("path"))
        else:
            body = render(run)
        return match.group("open") + body + match.group("close")

    return REGION.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = DOC.read_text()
    new = regenerate(text)
    if "--check" in argv:
        if new != text:
            print(f"{DOC.relative_to(ROOT)}: a benchmark table differs from its recorded run; "
                  "run python bench/report.py")
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC.relative_to(ROOT)} ({len(REGION.findall(new))} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
