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

and this script writes it (medians and ratios computed here, with the
command, date, timer and load average above the table). The suite runs
``--check`` (tests/docs/test_bench_report.py), so prose and numbers cannot
disagree without CI saying so.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
REGION = re.compile(
    r"(<!-- bench-report: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /bench-report -->)", re.S
)
BASELINE_NAMES = {"asgiref.inmemory.ChannelLayer": "asgiref 1.1.2",
                  "redis": "bare redis-py client", "redis-raw": "bare redis-py Connection"}


def _fmt(value: float, metric: str) -> str:
    return f"{value:,.1f}" if metric.endswith("_us") else f"{value:,.0f}"


def render(run: dict) -> str:
    """The Markdown for one recorded run: its provenance, then the table."""
    load = run["load_average"]
    layer = run["layer"].rsplit(".", 1)[-1]
    base = run.get("baseline_results")
    base_name = BASELINE_NAMES.get(run.get("baseline") or "", run.get("baseline") or "")
    lines = [
        f"`{run['command']}` — {run['date']}, {run['timer']} time, Python {run['python']}, "
        f"{run['machine']}, load average {load['before'][0]:.1f} before / "
        f"{load['after'][0]:.1f} after (1-minute). Medians of "
        f"{max(len(v) for m in run['results'].values() for v in m.values())} rounds.",
        "",
    ]
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


def regenerate(text: str, root: Path = ROOT) -> str:
    """``text`` with every bench-report region rewritten from its JSON."""

    def replace(match: re.Match) -> str:
        path = root / match.group("path")
        if not path.exists():
            raise SystemExit(f"{DOC.name}: {match.group('path')} does not exist")
        run = json.loads(path.read_text())
        return match.group(1) + render(run) + match.group(4)

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
