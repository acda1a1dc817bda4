"""noxfile.py and scripts/test describe the same runs.

scripts/test is CI's entry (README's test command); the nox sessions let a
developer run one row of its summary alone. Two copies of a matrix drift
apart unnoticed, so this reads both, without running either: the noxfile's
STEPS / ONCE_ONLY / MATRIX literals, and scripts/test's ``run_step`` /
``run_suite`` lines, the pip install line of each run's venv and its
``once_only`` array.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = (ROOT / "scripts" / "test").read_text()
NOXFILE = ast.parse((ROOT / "noxfile.py").read_text())

PIP_NOISE = {"-q", "--disable-pip-version-check"}


def _nox_literal(name: str):
    for node in NOXFILE.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            return ast.literal_eval(node.value)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"noxfile.py defines no {name} literal")


def _script_lines() -> list[list[str]]:
    """scripts/test's lines as shell words, continuation lines and arrays joined."""
    joined = SCRIPT.replace("\\\n", " ")
    # an array literal spans lines until its closing parenthesis
    joined = re.sub(r"=\(([^)]*)\)", lambda m: "=(" + " ".join(m.group(1).split()) + ")", joined)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def _once_only() -> list[str]:
    match = re.search(r"^once_only=\(([^)]*)\)", SCRIPT, re.M)
    assert match, "scripts/test has no once_only=( ... ) array"
    return shlex.split(match.group(1))


def _pip_install(venv: str) -> list[str]:
    """The arguments of ``VENV/bin/python -m pip install ...`` in scripts/test."""
    for words in _script_lines():
        if words[:4] == [f"{venv}/bin/python", "-m", "pip", "install"]:
            return [w for w in words[4:] if w not in PIP_NOISE]
    raise AssertionError(f"scripts/test never installs into {venv}")


def _expand(words: list[str]) -> list[str]:
    out = []
    for word in words:
        if word == "${once_only[@]}":
            out.extend(_once_only())
        elif word != "$@":
            out.append(word)
    return out


def test_the_lint_and_type_steps_are_the_same():
    steps = [w for w in _script_lines() if w and w[0] == "run_step"]
    script = [(label, [w for w in cmd if w not in (".venv/bin/python", "-m")])
              for _, label, _tool, *cmd in steps]
    nox = [(step["label"], step["command"]) for step in _nox_literal("STEPS")]
    assert script == nox, f"scripts/test: {script}\nnoxfile.py: {nox}"


def test_the_three_pytest_runs_are_the_same():
    suites = [w for w in _script_lines() if w and w[0] == "run_suite"]
    assert len(suites) == 3, suites
    matrix = _nox_literal("MATRIX")
    once_only = _nox_literal("ONCE_ONLY")
    assert [s[1] for s in suites] == [run["label"] for run in matrix]
    for (_, label, python, *args), run in zip(suites, matrix, strict=True):
        venv = python.removesuffix("/bin/python")
        expected = run["pytest"] + (once_only if run["once_only"] else [])
        assert _expand(args) == expected, f"{label}: pytest arguments differ"
        assert _pip_install(venv) == run["install"], f"{label}: installs differ"
        if run["python"] is not None:
            # the run's venv is made by the python of that version
            assert re.search(rf'"\$py{run["python"].replace(".", "")}" -m venv {venv}', SCRIPT), \
                f"{label}: scripts/test does not build {venv} with Python {run['python']}"


def test_once_only_lists_the_same_tests():
    assert _once_only() == _nox_literal("ONCE_ONLY")


def test_the_default_nox_run_is_what_ci_runs():
    sessions = [s["name"] for s in _nox_literal("STEPS")] + [
        r["name"] for r in _nox_literal("MATRIX")]
    defaults = [n for n in NOXFILE.body if isinstance(n, ast.Assign)
                and ast.unparse(n.targets[0]) == "nox.options.sessions"]
    assert defaults, "noxfile.py sets no nox.options.sessions"
    assert "STEPS" in ast.unparse(defaults[0].value) and "MATRIX" in ast.unparse(defaults[0].value)
    assert len(sessions) == len(set(sessions)) == 5, sessions
