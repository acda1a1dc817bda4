"""The built wheel installs anywhere Django does (posix_ipc only on Linux),
ships its types and says what CI runs.

Why read the wheel: what pip resolves on Windows is the wheel's
``Requires-Dist`` lines with their environment markers, and what a type
checker finds is the files the wheel installs, not pyproject.toml.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

BUILD = """
import sys, setuptools.build_meta as backend
print(backend.build_wheel(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a copy: the backend writes chanlite.egg-info and build/
    # next to setup.cfg, and the worktree must stay clean.
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "chanlite", src / "chanlite",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=src,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"building the wheel failed:\n{done.stderr[-3000:]}"
    return out / done.stdout.strip().splitlines()[-1]


def _dist_info(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f".dist-info/{name}"))
        return zf.read(member)


@pytest.fixture(scope="module")
def metadata(wheel):
    return email.message_from_bytes(_dist_info(wheel, "METADATA"))


@pytest.fixture(scope="module")
def requires_dist(metadata) -> list[Requirement]:
    return [Requirement(line) for line in metadata.get_all("Requires-Dist")]


def _resolved(requirements: list[Requirement], env: dict[str, str], extras=("",)) -> set[str]:
    names = set()
    for req in requirements:
        for extra in extras:
            if req.marker is None or req.marker.evaluate({**env, "extra": extra}):
                names.add(req.name.lower().replace("_", "-"))
    return names


WINDOWS = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}
MACOS = {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"}
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}


def test_windows_and_macos_install_without_posix_ipc(requires_dist):
    for env in (WINDOWS, MACOS):
        names = _resolved(requires_dist, env)
        assert "posix-ipc" not in names, (env, names)
        assert {"django", "msgpack", "wsproto", "h11"} <= names, names


def test_linux_gets_posix_ipc_and_the_ipc_extra_asks_for_it_anywhere(requires_dist):
    assert "posix-ipc" in _resolved(requires_dist, LINUX)
    assert "posix-ipc" in _resolved(requires_dist, MACOS, extras=("", "ipc"))
    markers = {str(r.marker) for r in requires_dist if r.name.replace("_", "-") == "posix-ipc"}
    assert markers == {'sys_platform == "linux"', 'extra == "ipc"'}, markers


def test_the_wheel_ships_py_typed_so_type_checkers_read_chanlites_annotations(wheel):
    # PEP 561: without the marker mypy and pyright treat chanlite as untyped.
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "chanlite/py.typed" in names, sorted(n for n in names if not n.endswith(".py"))
    assert "chanlite/delay/migrations/0001_initial.py" in names


def test_the_console_script_and_the_pytest_plugin_are_registered(wheel):
    entry_points = _dist_info(wheel, "entry_points.txt").decode()
    assert "chanlite = chanlite.server.__main__:main" in entry_points, entry_points
    assert "[pytest11]" in entry_points
    assert "chanlite = chanlite.testing.pytest_plugin" in entry_points, entry_points


def test_redis_py_is_capped_below_the_next_major_in_every_extra(requires_dist):
    # The Redis layer uses redis-py's connection internals: an unbounded range
    # would let a new major in untested.
    redis = [r for r in requires_dist if r.name == "redis"]
    assert {str(r.marker) for r in redis} == {
        'extra == "redis"', 'extra == "redis-crypto"', 'extra == "test"'}, redis
    for req in redis:
        assert "5.0" in req.specifier and "8.99" in req.specifier, req
        assert "9.0" not in req.specifier, f"{req}: no upper bound below redis-py 9"


def test_classifiers_name_the_pythons_and_djangos_scripts_test_runs(metadata):
    # scripts/test runs Python 3.11 and 3.13, Django 4.2 LTS, the newest 5.x
    # (on 3.11) and the newest 6.x (on 3.13): the classifiers say so, no more.
    classifiers = set(metadata.get_all("Classifier"))
    djangos = {c.rsplit(" :: ", 1)[1] for c in classifiers
               if c.startswith("Framework :: Django :: ")}
    pythons = {c.rsplit(" :: ", 1)[1] for c in classifiers
               if c.startswith("Programming Language :: Python :: 3.")}
    assert pythons == {"3.11", "3.12", "3.13"}, pythons
    assert {d.split(".")[0] for d in djangos} == {"4", "5", "6"}, djangos
    assert "4.2" in djangos, djangos
    assert metadata["Requires-Python"] == ">=3.11"
    assert "Typing :: Typed" in classifiers
