"""``runserver``, ``runworker`` and ``chanlite serve`` agree: one name, one
meaning; old spellings still work (with a warning); every option's help
shows its default; ``chanlite --version``."""

from __future__ import annotations

import argparse
import subprocess

import django
import pytest

from chanlite import __version__
from chanlite.server.__main__ import build_parser

from .project import CHANLITE, free_port
from .routing_files import write_app


def manage_parser(name: str) -> argparse.ArgumentParser:
    from django.core.management import load_command_class

    return load_command_class("chanlite", name).create_parser("manage.py", name)


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["serve"]


PARSERS = {
    "runserver": lambda: manage_parser("runserver"),
    "runworker": lambda: manage_parser("runworker"),
    "chanlite serve": serve_parser,
}


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: action for action in parser._actions for opt in action.option_strings}


def test_chanlite_version():
    out = subprocess.run([CHANLITE, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith(f"chanlite {__version__} (Django {django.get_version()}, Python ")


@pytest.mark.parametrize("command", PARSERS)
def test_workers_means_consumer_threads_everywhere(command):
    action = options(PARSERS[command]())["--workers"]
    assert action.dest == "workers" and "consumer threads" in action.help


@pytest.mark.parametrize("command", ["runserver", "chanlite serve"])
def test_http_threads_means_view_threads_in_both_servers(command):
    action = options(PARSERS[command]())["--http-threads"]
    assert "Django views" in action.help and "(default: 8)" in action.help


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_shows_its_default(command):
    missing = [
        opt for opt, action in options(PARSERS[command]()).items()
        if opt.startswith("--") and action.help != argparse.SUPPRESS
        and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        and opt not in ("--settings", "--pythonpath")  # Django's: "else DJANGO_SETTINGS_MODULE"
        and "default" not in (action.help or "")
    ]
    assert not missing, f"{command}: no default in the help of {missing}"


@pytest.mark.parametrize("command, old, new, dest", [
    ("runserver", "--threads", "--workers", "workers"),
    ("runworker", "--threads", "--workers", "workers"),
    ("chanlite serve", "--threads", "--http-threads", "threads"),
])
def test_old_spellings_still_work_with_a_warning(command, old, new, dest, capsys):
    parser = PARSERS[command]()
    args = ["app:layer"] if command == "chanlite serve" else []
    parsed = parser.parse_args([*args, old, "3"])
    assert getattr(parsed, dest) == 3
    assert f"{old} is deprecated; use {new} 3" in capsys.readouterr().err


def test_runserver_honours_nothreading(project):
    write_app(project)
    project.chanlite_first()
    proc = project.start("runserver", "--noreload", "--nothreading", f"127.0.0.1:{free_port()}")
    proc.wait_for(r"4 embedded worker thread\(s\), 1 HTTP thread\(s\)")


def test_runserver_http_threads_and_workers(project):
    write_app(project)
    project.chanlite_first()
    proc = project.start("runserver", "--noreload", "--workers", "2", "--http-threads", "3",
                         f"127.0.0.1:{free_port()}")
    proc.wait_for(r"2 embedded worker thread\(s\), 3 HTTP thread\(s\)")
