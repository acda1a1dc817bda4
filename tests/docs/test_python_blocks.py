"""Every Python block of README.md and docs/*.md runs (or, marked, compiles).

How (the convention is in tests/docs/blocks.py and docs/architecture.md):
each page gets a scratch Django project (tests/docs/scratch/); its file
blocks are written at their paths and imported, its other blocks become
``test_<page>_<line>.py`` modules, and one pytest subprocess per page runs
them all — module-level code runs at import, ``test_*`` functions and
``TestCase`` classes run as tests (pytest-django and chanlite's plugin are
active there, as in a user's project). A doc change that breaks a sample
fails this test, naming the block's line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .blocks import PAGES, ROOT, Block, python_blocks

SCRATCH = Path(__file__).resolve().parent / "scratch"
BLOCKS = python_blocks()


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run], ids=lambda b: b.id)
def test_marked_blocks_still_compile(block: Block) -> None:
    compile(block.code, block.id, "exec")


def _module_name(block: Block) -> str:
    page = re.sub(r"\W", "_", block.page.stem.lower())
    return f"test_doc_{page}_{block.line}"


def _write_project(page: Path, where: Path) -> list[str]:
    """The scratch project of ``page``; returns the test modules written."""
    for name in ("docs_settings.py", "docs_urls.py", "docs_routing.py"):
        shutil.copy(SCRATCH / name, where / name)
    (where / "pytest.ini").write_text(
        "[pytest]\nDJANGO_SETTINGS_MODULE = docs_settings\n"
        "addopts = -p no:cacheprovider -p no:randomly\npython_files = test_doc_*.py\n"
        "filterwarnings =\n    error::RuntimeWarning\n")
    modules = []
    for block in [b for b in BLOCKS if b.page == page and not b.not_run]:
        files = block.files()
        if files is None:
            name = _module_name(block)
            (where / f"{name}.py").write_text(f"# {block.id}\n{block.code}")
            modules.append(name)
            continue
        imports = []
        for rel, source in files:
            target = where / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            for parent in target.relative_to(where).parents:
                if str(parent) != ".":
                    (where / parent / "__init__.py").touch()
            target.write_text(source)
            imports.append(rel[:-3].replace("/", "."))
        # a file block is checked by importing it, in a module of its own
        name = _module_name(block)
        body = "".join(f"import {module}  # noqa: F401\n" for module in imports)
        (where / f"{name}.py").write_text(f"# {block.id}: files {', '.join(imports)}\n{body}")
        modules.append(name)
    return modules


PAGES_WITH_CODE = [p for p in PAGES if any(b.page == p and not b.not_run for b in BLOCKS)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_samples_run(page: Path, tmp_path: Path) -> None:
    modules = _write_project(page, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), DJANGO_SETTINGS_MODULE="docs_settings")
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--rootdir", str(tmp_path), "-c",
         str(tmp_path / "pytest.ini"), *[f"{m}.py" for m in modules]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # exit 5 = no tests collected: fine, the modules imported without error
    assert done.returncode in (0, 5), (
        f"a code sample of {page.relative_to(ROOT)} fails (the module name "
        f"test_doc_<page>_<line> gives the fence's line):\n{done.stdout[-6000:]}\n"
        f"{done.stderr[-3000:]}")


def test_every_page_is_seen() -> None:
    """The collector finds blocks (guards against a parser that finds none)."""
    assert len(BLOCKS) >= 30 and ROOT / "README.md" in {b.page for b in BLOCKS}
