"""The test suite's layout rules (docs/architecture.md, "Tests by area").

Each test sits in an area package under tests/; the root holds only the
suite-wide Django modules and the shared conftest.py. Every path to a test
that the docs, scripts/test, noxfile.py and pyproject.toml name exists: a
stale ``--ignore`` in scripts/test is silently ignored by pytest (the long
tests would then run once per Django version), and a stale doc reference
sends a reader to a file that is not there.
"""

from __future__ import annotations

import glob
import re

from .blocks import ROOT

TESTS = ROOT / "tests"
#: what may sit directly in tests/: the package marker, the shared fixtures
#: and the Django modules named by setup.cfg's DJANGO_SETTINGS_MODULE
ROOT_MODULES = {"__init__.py", "conftest.py", "settings.py", "urls.py", "routing.py"}
#: files that name test paths (CHANGELOG.md is history: old paths stay there)
NAMING = [ROOT / "scripts" / "test", ROOT / "noxfile.py", ROOT / "pyproject.toml",
          ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_PATH = re.compile(r"(?<![\w/.])tests/[\w/*.-]*[\w*]")


def test_no_module_sits_in_the_tests_root() -> None:
    stray = sorted(p.name for p in TESTS.glob("*.py") if p.name not in ROOT_MODULES)
    assert not stray, (
        f"{stray} sit directly in tests/: move each test module into its area "
        f"(tests/layers, server, model, toolkit, examples, platforms, compat, security, "
        f"first_hour, docs) and each helper next to the tests that use it"
    )


def test_every_area_is_a_package() -> None:
    """Areas hold modules with the same base name (compat/test_routing.py and
    model/test_routing.py); pytest tells them apart only inside packages."""
    areas = [p for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))]
    assert len(areas) >= 10, areas
    missing = sorted(p.name for p in areas if not (p / "__init__.py").exists())
    assert not missing, f"add an __init__.py to tests/{missing}"


def test_every_test_path_named_in_docs_and_scripts_exists() -> None:
    named = {
        (source.relative_to(ROOT).as_posix(), path.rstrip(".").split("::")[0])
        for source in NAMING
        for path in TEST_PATH.findall(source.read_text())
    }
    assert len(named) >= 20, named  # the pattern still finds the references
    missing = sorted((source, path) for source, path in named
                     if not glob.glob(str(ROOT / path)))
    assert not missing, f"these name test paths that do not exist: {missing}"
