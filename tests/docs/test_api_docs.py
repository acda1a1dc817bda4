"""docs/api.md is what scripts/api_docs.py generates from the docstrings.

Run in CI so a public docstring or signature change without regenerating
the reference fails (``python scripts/api_docs.py`` fixes it).
"""

from __future__ import annotations

import subprocess
import sys

from .blocks import ROOT


def test_api_reference_is_up_to_date() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "api_docs.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_object_addresses_in_the_reference() -> None:
    """A ``<... at 0x...>`` repr differs on every run, so --check could never pass."""
    assert " at 0x" not in (ROOT / "docs" / "api.md").read_text()
