"""Wherever Django runs: chanlite without posix_ipc and POSIX extras, and a
clear error where the IPC layer cannot run.

The other platforms are simulated on this Linux host by
``tests/platforms/platform_shim/sitecustomize.py`` (imports blocked, POSIX-only names
hidden) in subprocesses: one runs a representative part of the suite, the
others show what a Windows or macOS user sees when they configure the IPC
layer. The probe itself is also tested in-process, one missing piece at a time.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from chanlite.layers import _ipc_platform

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "platform_shim"


def _run(args: list[str], mode: str, timeout: float = 120, **env: str):
    environ = dict(os.environ, PYTHONPATH=f"{SHIM}{os.pathsep}{ROOT}", CHANLITE_SIMULATE=mode,
                   **env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def _assert_names_alternatives(text: str) -> None:
    assert "chanlite.layers.memory.InMemoryChannelLayer" in text, text
    assert "embedded workers" in text and "chanlite.layers.redis.RedisChannelLayer" in text, text


# --------------------------------------------------------- the probe, in-process


def test_this_linux_host_can_run_the_ipc_layer():
    assert _ipc_platform.missing_ipc_support() == []


def test_missing_posix_ipc_is_named(monkeypatch):
    monkeypatch.setattr(_ipc_platform, "_posix_ipc",
                        lambda: (None, "the posix_ipc package (No module named 'posix_ipc')"))
    with pytest.raises(ImproperlyConfigured) as info:
        _ipc_platform.check_ipc_support()
    assert isinstance(info.value, ImportError)  # "optional import" code keeps working
    assert "posix_ipc" in str(info.value)
    _assert_names_alternatives(str(info.value))


def test_missing_timed_semaphores_are_named(monkeypatch):
    fake = types.SimpleNamespace(SEMAPHORE_TIMEOUT_SUPPORTED=False)
    monkeypatch.setattr(_ipc_platform, "_posix_ipc", lambda: (fake, None))
    with pytest.raises(ImproperlyConfigured, match="sem_timedwait"):
        _ipc_platform.check_ipc_support()


def test_missing_robust_mutexes_are_named(monkeypatch):
    real = ctypes.CDLL

    class NoRobust:
        def __init__(self, name):
            self._lib = real(name)

        def __getattr__(self, name):
            if name == "pthread_mutex_consistent":
                raise AttributeError(name)
            return getattr(self._lib, name)

    monkeypatch.setattr(ctypes, "CDLL", NoRobust)
    with pytest.raises(ImproperlyConfigured) as info:
        _ipc_platform.check_ipc_support()
    assert "robust" in str(info.value) and "pthread_mutex_consistent" in str(info.value)
    assert "pthread_mutexattr_setrobust" not in str(info.value)  # that one is there


def test_missing_posix_functions_are_named(monkeypatch):
    monkeypatch.delattr(os, "sched_yield")
    with pytest.raises(ImproperlyConfigured, match=r"os\.sched_yield"):
        _ipc_platform.check_ipc_support()


def test_redis_waits_with_select_where_poll_is_missing():
    """Windows has no select.poll: the Redis layer's multi-host wait uses select()."""
    import socket

    from chanlite.layers.redis import _SelectPoller

    a, b = socket.socketpair()
    with a, b:
        poller = _SelectPoller()
        poller.register(a.fileno(), 1)
        assert poller.poll(10) == []
        b.send(b"x")
        assert poller.poll(1000) == [(a.fileno(), 1)]
        poller.unregister(a.fileno())
        assert poller.poll(0) == []


# ------------------------------------------- simulated platforms, in subprocesses


def test_the_simulation_hides_what_it_says():
    done = _run(["-c", """
import os, select, signal, socket
for module, name in [(os, "fork"), (os, "register_at_fork"), (socket, "AF_UNIX"),
                     (select, "poll"), (signal, "SIGHUP"), (signal, "SIGUSR1")]:
    assert not hasattr(module, name), name
for name in ("posix_ipc", "fcntl"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise AssertionError(name + " imported")
print("simulated")
"""], "no-posix")
    assert done.returncode == 0 and "simulated" in done.stdout, done.stderr


@pytest.mark.parametrize("mode, named", [
    ("no-posix-ipc", ["posix_ipc"]),
    ("no-posix", ["posix_ipc", "fcntl", "os.register_at_fork"]),
    ("macos", ["sem_timedwait", "pthread_mutex_consistent", "pthread_mutexattr_setrobust"]),
])
def test_configured_ipc_layer_explains_itself(mode, named):
    """Constructing it from settings, `manage.py check` and `chanlite_ipc` all
    say what is missing and what to use instead."""
    settings = {"DJANGO_SETTINGS_MODULE": "tests.server.server_ipc_settings"}
    build = _run(["-c", """
import django; django.setup()
from django.core.exceptions import ImproperlyConfigured
from chanlite.layers import get_channel_layer
try:
    get_channel_layer()
except ImproperlyConfigured as exc:
    print("ImproperlyConfigured:", exc)
"""], mode, **settings)
    check = _run(["-m", "django", "check"], mode, **settings)
    command = _run(["-m", "django", "chanlite_ipc", "--stats"], mode, **settings)
    assert "ImproperlyConfigured:" in build.stdout, build.stderr
    assert check.returncode != 0 and "chanlite.E101" in check.stderr, check.stderr
    assert command.returncode != 0 and "Traceback" not in command.stderr, command.stderr
    for out in (build.stdout, check.stderr, command.stderr):
        for name in named:
            assert name in out, (name, out)
        _assert_names_alternatives(out)


def test_check_is_silent_where_the_ipc_layer_runs():
    done = subprocess.run([sys.executable, "-m", "django", "check"], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env=dict(os.environ,
                                   DJANGO_SETTINGS_MODULE="tests.server.server_ipc_settings"))
    assert done.returncode == 0 and "E101" not in done.stderr, done.stderr


#: What "the rest works" means, as tests: the in-memory and Redis layers, the
#: worker, the testing toolkit (cases, pytest fixtures, live server), the
#: server in-process with embedded workers, and `chanlite serve` / `runserver`
#: as real processes over TCP. Deselected: tests of the IPC layer, of Unix
#: sockets, and one Redis test that itself interrupts a receive with SIGALRM.
REPRESENTATIVE = [
    "tests/layers/test_layers_memory.py", "tests/model/test_worker.py",
    "tests/toolkit/test_testing_cases.py", "tests/toolkit/test_testing_pytest.py",
    "tests/toolkit/test_testing_live.py", "tests/server/test_server_live.py",
    "tests/server/test_server_commands.py", "tests/layers/test_layers_redis.py",
    "tests/layers/test_layers_redis_multihost.py",
]
DESELECT = "not ipc and not unix and not interrupted_blocking_receive"


def test_representative_suite_passes_without_posix_ipc_and_posix_extras():
    done = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", *REPRESENTATIVE, "-k", DESELECT],
                "no-posix", timeout=600)
    tail = done.stdout[-4000:]
    assert done.returncode == 0, f"{tail}\n{done.stderr[-2000:]}"
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= 100 and " failed" not in tail, tail
