"""Developer sessions: ``nox -s tests``, ``property``, ``lint``, ``bench``, ``report``,
``mutation``.

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


#: Modules under mutation testing, as mutmut names their mutants
#: (``chanlite.layers.names.x_queue_for_send__mutmut_3``). The files and the
#: tests that may kill their mutants are configured in pyproject.toml
#: ([tool.mutmut]); mutmut runs, for each mutant, only the tests that called
#: the mutated function.
MUTATION_MODULES = [
    "chanlite.layers.names", "chanlite.layers.codec", "chanlite.layers.memory",
    "chanlite.layers.base", "chanlite.ordering", "chanlite.sessions", "chanlite.routing",
    "chanlite.testing.websocket", "chanlite.server.ws_session", "chanlite.server.http_session",
    "chanlite.server.http_wsgi",
]


@nox.session
def mutation(session: nox.Session) -> None:
    """mutmut over MUTATION_MODULES, one module at a time (slow: about a minute
    per 30 mutants per core; not part of the default run or CI).

    ``nox -s mutation -- chanlite.ordering`` runs one module. Results stay in
    ./mutants (reused by the next run); ``mutmut results`` lists survivors and
    ``mutmut show NAME`` shows one. Scores and triage: docs/testing.md.
    """
    session.install("-e", ".[test,redis]", "mutmut>=3.3,<4")
    for module in session.posargs or MUTATION_MODULES:
        session.run("mutmut", "run", f"{module}.*")
    session.run("mutmut", "results")
