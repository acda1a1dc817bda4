"""Every ``$ command`` of the docs runs, unless its block says why not.

Each page's console blocks run in order in one scratch project
(tests/docs/scratch/myproject: a complete Django project named as the docs
name it, on the IPC layer with a prefix of its own, so `chanlite serve`,
`runserver`, `runworker` and `chanlite_ipc` all share it), with `examples/`,
`bench/` and `scripts/` linked in. Within a block, ``export`` and ``cd``
carry over to the next lines, as in one terminal.

What is changed, and only this: ``python`` / ``.venv/bin/python`` is this
interpreter and ``chanlite`` is ``python -m chanlite.server``; servers
listen on a free port of 127.0.0.1 (``--bind 0.0.0.0``, ``--port 8000``,
``runserver [addr:]port``, ``--unix-socket /run/...`` are rewritten) and
``runserver`` gets ``--noreload`` (the test stops it with SIGTERM, which the
autoreloader's parent would not pass on). A server must answer HTTP and a
worker must report it is listening; then each gets SIGTERM and must exit.
Commands that cannot run here (installs, systemd, other hosts, benchmarks
that take minutes) sit in blocks marked ``<!-- not-run: why -->``.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .blocks import PAGES, ROOT, Command, shell_commands

SCRATCH = Path(__file__).resolve().parent / "scratch"
COMMANDS = shell_commands()
SERVER_WAIT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Terminal:
    """One shell's state (cwd, environment) inside a page's scratch project."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.cwd, self.env = home, home, dict(env)
        self.log: list[str] = []

    def run_line(self, text: str) -> None:
        for part in _split_and(shlex.split(text)):
            self.run(part)

    def run(self, argv: list[str]) -> None:
        env = dict(self.env)
        while argv and "=" in argv[0] and argv[0].split("=")[0].isidentifier():
            key, _, value = argv.pop(0).partition("=")
            env[key] = value
        head = argv[0]
        if head == "export":
            for item in argv[1:]:
                key, _, value = item.partition("=")
                self.env[key] = value
            return
        if head == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            return
        if head in ("python", ".venv/bin/python"):
            argv = [sys.executable, *argv[1:]]
        elif head == "chanlite":
            argv = [sys.executable, "-m", "chanlite.server", *argv[1:]]
        else:
            raise AssertionError(
                f"tests/docs/test_shell_commands.py cannot run {head!r}: teach it, or mark "
                "the block with <!-- not-run: why -->")
        if "serve" in argv or "runserver" in argv:
            self._server(self._listen_here(argv), env)
        elif "runworker" in argv or "rundelay" in argv:
            self._worker(argv, env)
        else:
            done = subprocess.run(argv, cwd=self.cwd, env=env, capture_output=True, text=True,
                                  timeout=60)
            self.log.append(f"$ {shlex.join(argv)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            assert done.returncode == 0, "\n".join(self.log)

    def _listen_here(self, argv: list[str]) -> list[str]:
        argv = list(argv)
        self.port, self.unix = _free_port(), None
        if "runserver" in argv:
            i = argv.index("runserver") + 1
            if i < len(argv) and not argv[i].startswith("-"):
                argv[i] = f"127.0.0.1:{self.port}"
            else:
                argv.insert(i, f"127.0.0.1:{self.port}")
            argv.append("--noreload")
            return argv
        for flag in ("--bind", "-b"):
            if flag in argv:
                argv[argv.index(flag) + 1] = "127.0.0.1"
        for flag in ("--port", "-p"):
            if flag in argv:
                argv[argv.index(flag) + 1] = str(self.port)
                break
        else:
            argv += ["--port", str(self.port)]
        for flag in ("--unix-socket", "-u"):
            if flag in argv:
                self.unix = str(self.home / "app.sock")
                argv[argv.index(flag) + 1] = self.unix
        return argv

    def _server(self, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        try:
            status = self._first_answer(proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=SERVER_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                raise AssertionError(
                    f"$ {shlex.join(argv)} ignored SIGTERM:\n{out[-3000:]}"
                ) from None
        self.log.append(f"$ {shlex.join(argv)}  -> HTTP {status}\n{out[-2000:]}")
        assert status is not None, "\n".join(self.log)
        assert proc.returncode in (0, -signal.SIGTERM), "\n".join(self.log)

    def _first_answer(self, proc: subprocess.Popen) -> int | None:
        deadline = time.monotonic() + SERVER_WAIT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if self.unix:
                    with socket.socket(socket.AF_UNIX) as sock:
                        sock.settimeout(5)
                        sock.connect(self.unix)
                        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        return int(sock.recv(64).split()[1])
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/", headers={"Host": "localhost"})
                return conn.getresponse().status
            except (OSError, http.client.HTTPException, IndexError, ValueError):
                time.sleep(0.1)
        return None

    def _worker(self, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        first = ""
        try:
            # "Worker: N thread(s) ... listening on ..." / "Delay: ... listening on asgi.delay"
            first = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=SERVER_WAIT)
        self.log.append(f"$ {shlex.join(argv)}\n{first}{out[-2000:]}")
        assert "listening on" in first and proc.returncode == 0, "\n".join(self.log)


def _split_and(tokens: list[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token == "&&":
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _project(where: Path) -> dict[str, str]:
    shutil.copytree(SCRATCH / "myproject", where / "myproject")
    shutil.copy(SCRATCH / "manage.py", where / "manage.py")
    for name in ("examples", "bench", "scripts"):
        (where / name).symlink_to(ROOT / name, target_is_directory=True)
    token = secrets.token_hex(4)
    # a fresh shell: no DJANGO_SETTINGS_MODULE unless a command exports it
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return dict(
        environ,
        PYTHONPATH=os.pathsep.join([str(where), str(SCRATCH), str(ROOT)]),
        DOCS_DB=str(where / "db.sqlite3"),
        DOCS_IPC_PREFIX=f"docs{token}",
        CHAT_DB=str(where / "chat.sqlite3"),
        CHAT_IPC_PREFIX=f"docschat{token}",
    )


PAGES_WITH_COMMANDS = [p for p in PAGES if any(c.block.page == p and not c.block.not_run
                                               for c in COMMANDS)]


@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_commands_run(page: Path, tmp_path: Path) -> None:
    env = _project(tmp_path)
    from chanlite.layers.ipc import IPCChannelLayer, remove_prefix

    # The pages show chanlite_ipc "while running": a process has created the
    # store and queued a message, as a running server would have.
    layer = IPCChannelLayer(prefix=env["DOCS_IPC_PREFIX"], memory=4 << 20, max_channels=256,
                            max_groups=32)
    layer.send("docs.queued", {"text": "waiting for a worker"})
    layer.close()
    try:
        blocks: dict[int, list[Command]] = {}
        for command in COMMANDS:
            if command.block.page == page and not command.block.not_run:
                blocks.setdefault(command.block.line, []).append(command)
        for commands in blocks.values():
            terminal = Terminal(tmp_path, env)
            for command in commands:
                try:
                    terminal.run_line(command.text)
                except AssertionError as exc:
                    raise AssertionError(f"{command.id}\n{exc}") from None
    finally:
        remove_prefix(env["DOCS_IPC_PREFIX"])
        remove_prefix(env["CHAT_IPC_PREFIX"])


def test_commands_are_found() -> None:
    assert len(COMMANDS) >= 30
    assert any(c.text.startswith("chanlite serve") for c in COMMANDS)
