"""The built wheel installs anywhere Django does: posix_ipc only on Linux.

Why read the wheel: what pip resolves on Windows is the wheel's
``Requires-Dist`` lines with their environment markers, not setup.cfg.
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
def requires_dist(tmp_path_factory) -> list[Requirement]:
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
    wheel = out / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(zf.read(meta_name))
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
