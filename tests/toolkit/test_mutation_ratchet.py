"""CI's small mutation ratchet: known-killed mutants must stay killed.

The mutants and the tests that kill them are listed in
tests/toolkit/mutation_ratchet.py; it runs in a subprocess so its patches never
reach this test session. The full run is ``nox -s mutation`` (docs/testing.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_known_killed_mutants_are_still_killed():
    done = subprocess.run(
        [sys.executable, "-m", "tests.toolkit.mutation_ratchet"], cwd=ROOT, capture_output=True,
        text=True, timeout=300,
    )
    last = done.stdout.strip().splitlines()[-1:] or [""]
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    from tests.toolkit.mutation_ratchet import MUTANTS

    assert last == [f"ratchet: all {len(MUTANTS)} mutants killed"], done.stdout[-2000:]


def test_the_ratchet_reports_a_mutant_no_test_kills():
    """The harness itself: an equivalent mutant (the default order used when
    sorting parked messages, which always carry one) must be reported as
    surviving, not counted as killed."""
    script = (
        "import sys, tests.toolkit.mutation_ratchet as r\n"
        "r.MUTANTS[:] = [r.Mutant('chanlite.ordering', '_release', "
        "'parked.sort(key=lambda c: int(c.get(\"order\", 0)))', "
        "'parked.sort(key=lambda c: int(c.get(\"order\", 1)))', "
        "'tests/model/test_ordering.py::test_strict_release_requeues_only_the_next_frame', "
        "'nothing')]\n"
        "sys.exit(r.main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "SURVIVED chanlite.ordering._release" in done.stdout, done.stdout[-2000:]
