"""docs/getting-started.md, "Add chanlite to a new project", run literally.

Every ``console`` block's ``$`` lines run in a shell (``pip install`` is
skipped: this venv has chanlite); every ``python`` block whose first line is
``# path`` is pasted: into a new file, or - for a file startproject made -
replacing the names it assigns (``INSTALLED_APPS``) and adding the others
(``CHANNEL_LAYERS``), or replacing the whole file when the text says so
(``asgi.py``). The servers the doc starts are started on a free port and
must echo a WebSocket message.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
from pathlib import Path

import websocket

from .project import PYTHON, Running, clean_env, free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
SECTION = "## Add chanlite to a new project"


def steps() -> list[tuple[str, str]]:
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(console|python)\n(.*?)```", section, re.S)


def paste(path: Path, code: str) -> None:
    """What a reader does with a ``# path`` block."""
    if not path.exists() or path.name == "asgi.py":  # new file, or "replace mysite/asgi.py"
        path.write_text(code)
        return
    lines = path.read_text().splitlines(keepends=True)
    tree = ast.parse("".join(lines))
    for node in ast.parse(code).body:
        name = node.targets[0].id  # type: ignore[attr-defined]
        segment = ast.get_source_segment(code, node) + "\n"
        old = next((n for n in tree.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", None) == name), None)
        if old is None:
            lines.append("\n" + segment)
        else:
            lines[old.lineno - 1:old.end_lineno] = [segment] + [""] * (
                old.end_lineno - old.lineno)
    path.write_text("".join(lines))


def echo_over_websocket(port: int) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/", timeout=20)
    try:
        ws.send("hello")
        assert ws.recv() == "hello"
    finally:
        ws.close()


def test_getting_started_runs_as_written(tmp_path):
    env = clean_env(PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}")
    cwd = tmp_path
    ran: list[str] = []
    for kind, body in steps():
        if kind == "python":
            first, _, code = body.partition("\n")
            assert first.startswith("# "), f"python block without a '# path' line:\n{body}"
            paste(cwd / first[2:].strip(), code)
            ran.append(f"pasted {first[2:].strip()}")
            continue
        for line in body.splitlines():
            if not line.startswith("$ "):
                continue
            command = line[2:].split("  #", 1)[0].strip()
            argv = shlex.split(command)
            ran.append(command)
            if argv[:2] == ["pip", "install"]:
                continue
            if argv[0] == "cd":
                cwd = cwd / argv[1]
                continue
            port = free_port()
            if argv[-1] == "runserver":
                argv += ["--noreload", f"127.0.0.1:{port}"]
            elif argv[:2] == ["chanlite", "serve"]:
                argv += ["--port", str(port)]
            else:
                done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=120)
                assert done.returncode == 0, f"{command} failed after {ran}:\n{done.stdout}"
                continue
            server = Running(argv, cwd, env)
            try:
                server.wait_for(rf"(at http://127\.0\.0\.1:{port}/)", timeout=60)
                echo_over_websocket(port)
            finally:
                server.stop()
    assert any(step.endswith("runserver") for step in ran), ran
    assert any(step.startswith("chanlite serve") for step in ran), ran
