"""``scripts/chat``: a busy port fails before the banner; restarting the demo
keeps the demo users as they are."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from .project import clean_env

ROOT = Path(__file__).resolve().parents[2]


def test_scripts_chat_checks_the_port_before_anything_else():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(["bash", "scripts/chat", f"127.0.0.1:{port}"], cwd=ROOT,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "bash scripts/chat 8001" in out.stderr
    assert "chanlite chat: open" not in out.stdout  # no banner for a server that never runs
    assert "installing" not in out.stdout  # nor a reinstall first


def test_create_demo_users_keeps_existing_users(tmp_path):
    env = clean_env(CHAT_DB=str(tmp_path / "chat.sqlite3"), CHAT_FAST_PASSWORD_HASHER="1")
    manage = [sys.executable, str(ROOT / "examples/chat/manage.py")]

    def run(*args: str) -> str:
        done = subprocess.run([*manage, *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=ROOT / "examples/chat")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("migrate", "--noinput", "-v0")
    assert "created demo user 'alice'" in run("create_demo_users")
    run("shell", "-c", "from django.contrib.auth.models import User; "
        "u = User.objects.get(username='alice'); u.set_password('mine'); "
        "u.first_name = 'Alice'; u.save()")
    out = run("create_demo_users")
    assert "'alice' exists with another password; kept" in out
    check = run("shell", "-c", "from django.contrib.auth.models import User; "
                "u = User.objects.get(username='alice'); "
                "print(u.check_password('mine'), u.first_name)")
    assert check.strip().splitlines()[-1] == "True Alice"
    assert "reset demo user 'alice'" in run("create_demo_users", "--reset")
