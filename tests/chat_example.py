"""Run examples/chat as a user would: migrate, demo users, ``manage.py runserver``.

Used by the chat example's tests (browser and protocol level). The server is
a real subprocess on a free port (``runserver 127.0.0.1:0``; the port is read
from its banner), with its own SQLite file, so a test exercises exactly what
``bash scripts/chat`` starts - settings, routing, embedded workers and all.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "examples" / "chat"
MANAGE = CHAT / "manage.py"
DEMO_PASSWORD = "chanlite-demo"
START_TIMEOUT = 30.0  # migrate + runserver start, on a busy 2-core CI machine

_BANNER = re.compile(r"Starting development server at (http://[^/\s]+/)")


def _env(db: Path, layer: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="chatsite.settings", CHAT_DB=str(db), CHAT_LAYER=layer,
               PYTHONUNBUFFERED="1", DJANGO_RUNSERVER_HIDE_WARNING="true")
    return env


class ChatServer:
    """``examples/chat`` served by ``manage.py runserver`` in a subprocess."""

    def __init__(self, workdir: Path, layer: str = "memory") -> None:
        self.db = workdir / "chat.sqlite3"
        self.env = _env(self.db, layer)
        self.output: list[str] = []
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def manage(self, *args: str) -> str:
        """Run one management command to completion (bounded), return its output."""
        done = subprocess.run([sys.executable, str(MANAGE), *args], env=self.env, cwd=CHAT,
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> str:
        """Migrate, create the demo users, start runserver; return its base URL."""
        self.manage("migrate", "--noinput", "-v0")
        self.manage("create_demo_users")
        self.proc = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", "127.0.0.1:0", "--noreload"],
            env=self.env, cwd=CHAT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name="chat-server-output", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"runserver printed no address in {START_TIMEOUT}s:\n"
                                   + "".join(self.output)) from None
            if line is None:
                raise RuntimeError("runserver exited before serving:\n" + "".join(self.output))
            found = _BANNER.search(line)
            if found:  # printed once the socket listens: connections queue from now on
                self.url = found.group(1)
                return self.url

    def stop(self) -> None:
        """SIGINT (Ctrl-C, as a user stops it), then kill if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log(self) -> str:
        """What the server printed so far (for failure messages)."""
        return "".join(self.output[-80:])
