"""A brand-new ``startproject`` project in a temp directory, driven the way a
new user drives it: ``manage.py`` and ``chanlite`` as subprocesses.

Every wait is bounded and fails with the output seen so far, so a hang reads
as "runserver printed X and then nothing for 30 s", not as a pytest timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PYTHON = sys.executable
CHANLITE = str(Path(PYTHON).with_name("chanlite"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no test settings, unbuffered output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Running:
    """A started command whose merged stdout+stderr is collected by a thread."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        """The first match of ``pattern`` in the output, waiting up to ``timeout``."""
        regex = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = regex.search("".join(self._lines))
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._changed.wait(min(left, 0.2))
        raise AssertionError(
            f"{' '.join(self.args[1:])!r} never printed {pattern!r} "
            f"(exit status {self.proc.poll()}); output:\n{self.output}")

    def wait_exit(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"{' '.join(self.args[1:])!r} still running after {timeout}s; output:\n"
                f"{self.output}") from None
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """SIGTERM the whole process group (the autoreloader has a child)."""
        if self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._reader.join(5)


class Project:
    """``django-admin startproject mysite`` + ``startapp chat`` under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = root / "mysite" / "settings.py"
        self.running: list[Running] = []

    @classmethod
    def create(cls, root: Path, template: Path | None = None) -> Project:
        if template is not None:
            shutil.copytree(template, root, dirs_exist_ok=True)
            return cls(root)
        root.mkdir(parents=True, exist_ok=True)
        for args in (["-m", "django", "startproject", "mysite", str(root)],
                     [str(root / "manage.py"), "startapp", "chat"]):
            subprocess.run([PYTHON, *args], cwd=root, env=clean_env(), check=True,
                           capture_output=True, timeout=60)
        return cls(root)

    # editing --------------------------------------------------------------

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add_settings(self, text: str) -> None:
        with self.settings.open("a") as f:
            f.write("\n" + text + "\n")

    def installed_apps(self, apps: list[str]) -> None:
        """Replace INSTALLED_APPS with ``apps``."""
        self.add_settings(f"INSTALLED_APPS = {apps!r}")

    def chanlite_first(self, routing: str | None = "chat.routing.channel_routing",
                       backend: str = "chanlite.layers.memory.InMemoryChannelLayer",
                       config: dict | None = None) -> None:
        """The settings the docs ask for: chanlite above staticfiles, one layer."""
        self.add_settings(
            "INSTALLED_APPS.insert(0, 'chanlite')\nINSTALLED_APPS.append('chat')\n"
            f"CHANNEL_LAYERS = {{'default': {{'BACKEND': {backend!r}"
            + (f", 'ROUTING': {routing!r}" if routing else "")
            + (f", 'CONFIG': {config!r}" if config is not None else "") + "}}")

    # running --------------------------------------------------------------

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``python manage.py ARGS`` to completion; stdout+stderr merged."""
        return subprocess.run([PYTHON, "manage.py", *args], cwd=self.root, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)

    def start(self, *args: str, program: str = "manage", **env: str) -> Running:
        """Start ``python manage.py ARGS`` (or ``chanlite ARGS``) in the background."""
        command = [PYTHON, "manage.py", *args] if program == "manage" else [CHANLITE, *args]
        running = Running(command, self.root,
                          clean_env(DJANGO_SETTINGS_MODULE="mysite.settings", **env)
                          if program != "manage" else clean_env(**env))
        self.running.append(running)
        return running

    def stop_all(self) -> None:
        for running in self.running:
            running.stop()
