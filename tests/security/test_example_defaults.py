"""Issue 13 item 8: the example chat is not a DEBUG site unless asked to be,
and the deployment docs list the production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def chat_debug(env_debug: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    if env_debug is not None:
        env["CHAT_DEBUG"] = env_debug
    code = "import chatsite.settings as s; print(s.DEBUG)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT / "examples" / "chat", env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()


@pytest.mark.parametrize("value, expected", [(None, "False"), ("0", "False"), ("1", "True")])
def test_chat_debug_comes_from_the_environment_and_defaults_off(value, expected):
    assert chat_debug(value) == expected


def test_the_demo_script_turns_debug_on_and_says_so():
    script = (ROOT / "scripts" / "chat").read_text()
    assert 'export CHAT_DEBUG="${CHAT_DEBUG:-1}"' in script
    assert "DEBUG is on for this demo" in script


def test_deployment_checklist_lists_the_production_settings():
    text = (ROOT / "docs" / "deployment.md").read_text()
    checklist = text[text.index("## Production checklist"):]
    for item in ("DEBUG = False", "ALLOWED_HOSTS", "Origin check", "Proxy headers",
                 "segment mode", "max_connections", "body_timeout", "max_body_memory"):
        assert item in checklist, item
