"""Developer sessions: ``nox -s tests``, ``property``, ``lint``, ``bench``, ``report``.

Why nox: each session gets a clean virtualenv, so "works on my machine"
dependencies cannot leak in, and the benchmark's baseline (asgiref 1.1.2,
which conflicts with Django's asgiref) lives in its own environment.
``scripts/test`` stays the one-line CI entry; ``nox -s tests`` runs the same
pytest line inside a fresh environment.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
BASELINE_VENV = ROOT / ".nox" / "asgiref112"
BASELINE_REQUIREMENT = "asgiref==1.1.2"
LAYER = "chanlite.layers.memory.InMemoryChannelLayer"


@nox.session
@nox.parametrize("django", ["4.2", "5.2"])
def tests(session: nox.Session, django: str) -> None:
    """tests/ and property_tests/ with the bounded CI Hypothesis profile,
    on the oldest and newest supported Django."""
    session.install("-e", ".[test,redis,channels4]", "uvicorn>=0.20", f"Django~={django}.0")
    session.run(
        "python", "-m", "pytest", "-q", "tests", "property_tests", "tests_channels4",
        "--hypothesis-profile=ci", *session.posargs,
    )


@nox.session(name="property")
def property_deep(session: nox.Session) -> None:
    """property_tests/ with the deep Hypothesis profile (minutes, for bug hunting)."""
    session.install("-e", ".[test,redis]")
    session.run(
        "python", "-m", "pytest", "-q", "property_tests",
        "--hypothesis-profile=deep", *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, the tests and the benchmarks."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "chanlite", "tests", "property_tests", "tests_channels4", "bench", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """bench/layers.py on the in-memory layer, with asgiref 1.1.2 as the baseline.

    Extra arguments go to bench/layers.py, e.g. ``nox -s bench -- --repeat 9``.
    """
    session.install("-e", ".")
    baseline_python = BASELINE_VENV / "bin" / "python"
    if not baseline_python.exists():
        session.run("python", "-m", "venv", str(BASELINE_VENV))
    session.run(
        str(baseline_python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
        BASELINE_REQUIREMENT, external=True,
    )
    session.run(
        "python", "bench/layers.py", LAYER, "--kw", "capacity=100000",
        "--baseline-python", str(baseline_python), *session.posargs,
    )


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """Rewrite docs/performance.md's tables from the runs in bench/results/
    (record one with ``nox -s bench -- ... --record bench/results/NAME.json``)."""
    session.run("python", "bench/report.py", *session.posargs)
