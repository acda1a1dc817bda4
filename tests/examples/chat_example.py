"""Run examples/chat as a user would: migrate, demo users, ``manage.py runserver``.

Used by the chat example's tests (browser and protocol level). The server is
a real subprocess on a free port (``runserver 127.0.0.1:0``; the port is read
from its banner), with its own SQLite file, so a test exercises exactly what
``bash scripts/chat`` starts - settings, routing, embedded workers and all.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat"
MANAGE = CHAT / "manage.py"
DEMO_PASSWORD = "chanlite-demo"
START_TIMEOUT = 30.0  # migrate + runserver start, on a busy 2-core CI machine

_template_db: Path | None = None

_BANNER = re.compile(r"Starting development server at (http://[^/\s]+/)")


def _env(db: Path, layer: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="chatsite.settings", CHAT_DB=str(db), CHAT_LAYER=layer,
               PYTHONUNBUFFERED="1", DJANGO_RUNSERVER_HIDE_WARNING="true",
               CHAT_FAST_PASSWORD_HASHER="1")
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

    def prepare_db(self) -> None:
        """Migrate and create the demo users - once per test process: later
        servers start from a copy (migrate is the slow part of starting)."""
        global _template_db
        if _template_db is None or not _template_db.exists():
            self.manage("migrate", "--noinput", "-v0")
            self.manage("create_demo_users")
            folder = tempfile.mkdtemp(prefix="chanlite-chat-db-")
            atexit.register(shutil.rmtree, folder, True)
            _template_db = Path(folder) / "template.sqlite3"
            shutil.copyfile(self.db, _template_db)
        else:
            shutil.copyfile(_template_db, self.db)

    def start(self) -> str:
        """Migrate, create the demo users, start runserver; return its base URL."""
        self.prepare_db()
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


class Process:
    """A subprocess whose output lines are collected; ``wait_for(regex)`` is bounded."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, env=env, cwd=CHAT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"no line matching {pattern!r} within {timeout}s:\n"
                                   + "".join(self.output)) from None
            if line is None:
                raise RuntimeError(f"process exited before printing {pattern!r}:\n"
                                   + "".join(self.output))
            found = regex.search(line)
            if found:
                return found

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


class ChatDeployment(ChatServer):
    """The documented one-host production shape: ``chanlite serve`` (no
    embedded workers) plus a separate ``manage.py runworker``, on the IPC layer."""

    def __init__(self, workdir: Path, ipc_prefix: str) -> None:
        super().__init__(workdir, layer="ipc")
        self.env["CHAT_IPC_PREFIX"] = ipc_prefix
        self.processes: list[Process] = []

    def start(self) -> str:
        self.prepare_db()
        chanlite = str(Path(sys.executable).with_name("chanlite"))
        server = Process([chanlite, "serve", "chatsite.asgi:channel_layer", "--port", "0",
                          "--workers", "0"], self.env)
        self.processes.append(server)
        port = server.wait_for(r" at http://127\.0\.0\.1:(\d+)/").group(1)
        worker = Process([sys.executable, str(MANAGE), "runworker", "--workers", "2"], self.env)
        self.processes.append(worker)
        worker.wait_for(r"Worker: \d+ consumer thread\(s\)")
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def log(self) -> str:
        return "".join(line for p in self.processes for line in p.output[-40:])


# ------------------------------------------------------------------ clients


def login(url: str, username: str, password: str = DEMO_PASSWORD) -> str:
    """Sign in through the real login view; return the Cookie header to reuse."""
    import http.client
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=START_TIMEOUT)
    try:
        conn.request("GET", "/accounts/login/")
        response = conn.getresponse()
        page = response.read().decode()
        csrf = re.search(r"csrftoken=([^;]+)", response.getheader("set-cookie") or "")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert csrf and token, f"no CSRF cookie/token on the login page: {page[:300]}"
        form = urlencode({"username": username, "password": password,
                          "csrfmiddlewaretoken": token.group(1)})
        conn.request("POST", "/accounts/login/", body=form, headers={
            "Cookie": f"csrftoken={csrf.group(1)}",
            "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        session = re.search(r"sessionid=([^;]+)", response.getheader("set-cookie") or "")
        assert response.status == 302 and session, f"login of {username} failed ({response.status})"
        return f"csrftoken={csrf.group(1)}; sessionid={session.group(1)}"
    finally:
        conn.close()
