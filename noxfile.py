"""Developer sessions: what CI runs (``lint``, ``types``, ``tests``,
``tests-django42``, ``tests-py313``), plus ``property``, ``bench``,
``bench-peers``, ``report``, ``mutation``.

Why nox: each session gets a clean virtualenv, so "works on my machine"
dependencies cannot leak in, and the benchmark's baseline (asgiref 1.1.2,
which conflicts with Django's asgiref) lives in its own environment.
``scripts/test`` stays the one-line CI entry (README's test command); the
sessions below run the same steps with the same installs and pytest
arguments, one session per row of its summary table. STEPS and MATRIX are
plain literals so that tests/docs/test_test_matrix.py can read them and check
them against scripts/test: change both together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nox

nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
BASELINE_VENV = ROOT / ".nox" / "asgiref112"
BASELINE_REQUIREMENT = "asgiref==1.1.2"
LAYER = "chanlite.layers.memory.InMemoryChannelLayer"

#: scripts/test's first steps (seconds each): name, summary label, command,
#: and what the step needs installed (mypy reads chanlite's dependencies).
STEPS: list[dict[str, Any]] = [
    {"name": "lint", "label": "lint (ruff check .)", "command": ["ruff", "check", "."],
     "install": ["ruff>=0.5"]},
    {"name": "types", "label": "types (mypy)", "command": ["mypy"],
     "install": ["-e", ".[test]"]},
]

#: Tests that do not depend on Django's or Python's version run once, in the
#: first run (scripts/test's ``once_only``).
ONCE_ONLY: list[str] = [
    "--ignore=tests/examples/test_e2e_browser.py", "--ignore=tests/docs",
    "--ignore=tests/platforms/test_packaging.py",
    "--ignore=tests/platforms/test_platforms.py", "--ignore=tests/layers/test_layers_ipc_procs.py",
    "--ignore=tests/security/test_ipc_lock_exits.py",
    "--ignore=tests/layers/test_layers_redis_sentinel.py",
]

#: scripts/test's three pytest runs. ``python`` None: the interpreter nox
#: runs on (scripts/test's ``python3``); ``once_only``: add ONCE_ONLY.
MATRIX: list[dict[str, Any]] = [
    {"name": "tests", "label": "tests + property_tests + tests_channels4", "python": None,
     "install": ["-e", ".[test,redis,channels4]", "uvicorn>=0.20"],
     "pytest": ["-q", "tests", "property_tests", "tests_channels4", "--hypothesis-profile=ci"],
     "once_only": False},
    {"name": "tests-django42", "label": "tests on Django 4.2 LTS", "python": None,
     "install": ["-e", ".[test,redis]", "Django>=4.2,<4.3"],
     "pytest": ["-q", "tests"], "once_only": True},
    {"name": "tests-py313", "label": "tests on Python 3.13", "python": "3.13",
     "install": ["-e", ".[test,redis]"],
     "pytest": ["-q", "tests"], "once_only": True},
]

nox.options.sessions = [step["name"] for step in STEPS] + [run["name"] for run in MATRIX]


def _step_session(step: dict[str, Any]) -> None:
    @nox.session(name=step["name"])
    def session_(session: nox.Session) -> None:
        session.install(*step["install"])
        session.run(*step["command"], *session.posargs)

    session_.__doc__ = f"{step['label']}, as scripts/test runs it."


def _suite_session(run: dict[str, Any]) -> None:
    @nox.session(name=run["name"], python=run["python"])
    def session_(session: nox.Session) -> None:
        session.install(*run["install"])
        once_only = ONCE_ONLY if run["once_only"] else []
        session.run("python", "-m", "pytest", *run["pytest"], *once_only, *session.posargs)

    session_.__doc__ = f"{run['label']}, as scripts/test runs it."


for _step in STEPS:
    _step_session(_step)
for _run in MATRIX:
    _suite_session(_run)


@nox.session(name="property")
def property_deep(session: nox.Session) -> None:
    """property_tests/ with the deep Hypothesis profile (minutes, for bug hunting)."""
    session.install("-e", ".[test,redis]")
    session.run(
        "python", "-m", "pytest", "-q", "property_tests",
        "--hypothesis-profile=deep", *session.posargs,
    )


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


#: The servers and layers bench/server.py --peers and bench/layers.py --peers
#: compare chanlite with; uvicorn[standard] is uvicorn as deployed (uvloop,
#: httptools, websockets).
BENCH_PEERS = [
    "channels>=4", "daphne>=4", "uvicorn[standard]>=0.20", "waitress>=3", "gunicorn>=22",
]


@nox.session(name="bench-peers")
def bench_peers(session: nox.Session) -> None:
    """chanlite side by side with its peers, interleaved round by round, in
    one venv (.nox/bench-peers) so the peers never enter the project's own.

    Runs ``bench/server.py --peers`` (needs ``wrk``: ``apt-get install wrk``)
    and then what ``bench-layer-peers`` runs (channels_redis in its own venv);
    each records its table in bench/results/ for ``nox -s report``. Extra
    arguments go to bench/server.py, e.g. ``nox -s bench-peers -- --rounds 5``.
    """
    session.install("-e", ".[redis]", *BENCH_PEERS)
    session.run("python", "bench/server.py", "--peers", "--idle", "5000", "--idle-big", "19900",
                "--record", "bench/results/server-peers.json", *session.posargs)
    _run_layer_peers(session, "--record", "bench/results/layers-peers.json")


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


LAYER_PEERS_VENV = Path(".nox") / "layer-peers"


@nox.session(name="bench-layer-peers")
def bench_layer_peers(session: nox.Session) -> None:
    """bench/layers.py --peers: chanlite's Redis and IPC layers against
    channels_redis (core and pub/sub) and multiprocessing.Queue, rounds interleaved.

    channels_redis lives in its own venv (``.nox/layer-peers``) so its
    dependencies cannot change the ones chanlite is measured with. Extra
    arguments go to bench/layers.py, e.g.
    ``nox -s bench-layer-peers -- --rounds 5 --record bench/results/layers-peers.json``.
    """
    session.install("-e", ".[redis]")
    _run_layer_peers(session, *session.posargs)


def _run_layer_peers(session: nox.Session, *args: str) -> None:
    """bench/layers.py --peers with channels_redis in ``.nox/layer-peers``
    (chanlite itself must already be installed in the session's venv)."""
    peers_python = LAYER_PEERS_VENV / "bin" / "python"
    if not (ROOT / peers_python).exists():
        session.run("python", "-m", "venv", str(ROOT / LAYER_PEERS_VENV), external=True)
    session.run(
        str(ROOT / peers_python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "channels_redis>=4.2", external=True,
    )
    session.run(
        "python", "bench/layers.py", "--peers", "--peers-python", str(peers_python), *args,
    )
