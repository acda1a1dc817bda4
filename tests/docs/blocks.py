"""Code blocks and shell commands of README.md and docs/*.md, for the docs tests.

The convention (documented in docs/architecture.md, "Docs that run"):

- every ```` ```python ```` block runs. A block whose first line is a path
  comment (``# chat/routing.py``) is a *file*: it is written to that path in
  a scratch project (several ``# path.py`` lines split one block into several
  files) and imported; any other block is a module of its own in that
  project, run by pytest, so ``test_*`` functions and ``TestCase`` classes in
  it run as tests. Blocks of one page share the page's scratch project, in
  page order, so a test block can import the files shown above it.
- a block that is deliberately not runnable (a fragment, a settings excerpt)
  carries the marker ``<!-- not-run: why -->`` on the line right above its
  fence: Python is then only compiled, shell commands are not run;
- every ``$ command`` line of a ```` ```console ```` block runs (see
  tests/docs/test_shell_commands.py for how) unless its block is marked.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^\s*<!--\s*not-run:\s*(?P<why>.+?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>```+)(?P<info>[^`]*)$")
FILE_HEADER = re.compile(r"^# (?P<path>[\w./-]+\.py)\b")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the marker's reason, if marked

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def files(self) -> list[tuple[str, str]] | None:
        """``[(path, source)]`` for a file block, else None."""
        lines = self.code.splitlines()
        if not lines or not FILE_HEADER.match(lines[0]):
            return None
        files: list[tuple[str, list[str]]] = []
        for line in lines:
            header = FILE_HEADER.match(line)
            if header:
                files.append((header.group("path"), []))
            files[-1][1].append(line)
        return [(path, "\n".join(body).strip() + "\n") for path, body in files]


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page`` with its language and marker."""
    found = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence or not fence.group("info").strip():
            i += 1
            continue
        start, ticks, indent = i, fence.group("ticks"), fence.group("indent")
        lang = fence.group("info").strip().split()[0]
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != ticks:
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        marker = MARKER.match(lines[start - 1]) if start else None
        found.append(Block(page, start + 1, lang, textwrap.dedent("\n".join(body)) + "\n",
                           marker.group("why") if marker else None))
        i += 1
    return found


def python_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang in ("python", "py")]


@dataclass(frozen=True)
class Command:
    block: Block
    text: str  # continuation lines joined, trailing comment kept out

    @property
    def id(self) -> str:
        return f"{self.block.id} $ {self.text[:60]}"


def shell_commands() -> list[Command]:
    """Each ``$ ...`` line (with its ``\\`` continuations) of console/sh blocks."""
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.lang not in ("console", "sh", "bash", "shell"):
                continue
            lines = block.code.splitlines()
            i = 0
            while i < len(lines):
                line = lines[i]
                if line.startswith("$ "):
                    text = line[2:]
                    while text.rstrip().endswith("\\") and i + 1 < len(lines):
                        i += 1
                        text = text.rstrip()[:-1].rstrip() + " " + lines[i].strip()
                    text = re.sub(r"\s+#(?![^'\"]*['\"]).*$", "", text).strip()
                    found.append(Command(block, text))
                i += 1
    # the README's two commands are indented code blocks, not fences
    return found
