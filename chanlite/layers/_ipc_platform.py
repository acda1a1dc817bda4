"""Can the IPC layer run on this machine? Checked before anything POSIX-only
is imported, so the answer is a clear error, not a traceback.

The IPC layer needs, beyond Python itself:

* the ``posix_ipc`` package (POSIX shared memory and semaphores). chanlite
  depends on it only on Linux (``sys_platform == "linux"``): it does not
  install on Windows and would be useless on macOS;
* a C library with *robust*, process-shared pthread mutexes
  (``pthread_mutexattr_setrobust``, ``pthread_mutex_consistent``): when a
  process holding the lock is killed, the kernel hands the lock to the next
  process instead of leaving every other process blocked forever. macOS and
  most BSDs do not have them;
* semaphores with a timeout (``sem_timedwait``; ``posix_ipc`` reports it as
  ``SEMAPHORE_TIMEOUT_SUPPORTED``): a blocked receiver's bounded sleep. macOS
  does not have it;
* ``fcntl``, ``os.register_at_fork`` and ``os.sched_yield``.

A non-robust mutex with owner-pid recovery was considered for macOS and
rejected: a pid can be reused, and checking the owner costs a system call
on the hot path that the robust mutex does not. Everything else in chanlite
(the in-memory and Redis layers, the server, workers, the testing toolkit)
runs without any of this; see docs/layers.md, "Platforms".
"""

from __future__ import annotations

import importlib
import os
import sys

from django.core.exceptions import ImproperlyConfigured

__all__ = ["ALTERNATIVES", "IPCUnavailable", "check_ipc_support", "describe", "missing_ipc_support"]

ALTERNATIVES = (
    "Alternatives: for development on any OS, the in-memory layer "
    "('chanlite.layers.memory.InMemoryChannelLayer') with the server's embedded "
    "workers (manage.py runserver, or chanlite serve --workers N); for several "
    "processes or hosts, the Redis layer ('chanlite.layers.redis.RedisChannelLayer', "
    "pip install 'chanlite[redis]'). See docs/layers.md, \"Platforms\"."
)


# Django ships no type stubs, so ImproperlyConfigured is Any to mypy here.
class IPCUnavailable(ImproperlyConfigured, ImportError):  # type: ignore[misc]
    """The IPC layer cannot run here; the message names what is missing.

    Also an ``ImportError``: ``import chanlite.layers.ipc`` raises it, and code
    that treats the IPC layer as optional (``except ImportError``) keeps
    working, while settings that name the layer get an ``ImproperlyConfigured``.
    """


def _posix_ipc() -> tuple[object | None, str | None]:
    try:
        return importlib.import_module("posix_ipc"), None
    except ImportError as exc:
        return None, (
            f"the posix_ipc package ({exc}; chanlite installs it on Linux only, "
            "elsewhere: pip install 'chanlite[ipc]' where it builds)"
        )


def _libc_missing() -> list[str]:
    try:
        import ctypes  # noqa: PLC0415 — its ImportError is what this check reports

        libc = ctypes.CDLL(None)
    except (ImportError, OSError, TypeError) as exc:  # Windows: CDLL(None) is a TypeError
        return [f"a POSIX C library reachable through ctypes ({exc})"]
    wanted = ("pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust",
              "pthread_mutex_consistent")
    absent = [name for name in wanted if not hasattr(libc, name)]
    if absent:
        return [f"robust process-shared pthread mutexes (the C library lacks {', '.join(absent)})"]
    return []


def missing_ipc_support() -> list[str]:
    """What this machine lacks for the IPC layer (empty: it can run)."""
    missing = []
    posix_ipc, problem = _posix_ipc()
    if problem:
        missing.append(problem)
    elif not getattr(posix_ipc, "SEMAPHORE_TIMEOUT_SUPPORTED", False):
        missing.append("semaphores with a timeout (sem_timedwait; "
                       "posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED is False)")
    missing += _libc_missing()
    try:
        importlib.import_module("fcntl")
    except ImportError:
        missing.append("the fcntl module")
    absent = [f"os.{name}" for name in ("register_at_fork", "sched_yield") if not hasattr(os, name)]
    if absent:
        missing.append(" and ".join(absent))
    return missing


def describe(missing: list[str]) -> str:
    """One sentence for an error or a system check: what is missing, and why."""
    return (f"The IPC channel layer cannot run on this platform ({sys.platform}): it needs "
            f"{'; '.join(missing)}. It runs on Linux only (docs/layers.md says why).")


def check_ipc_support() -> None:
    """Raise :class:`IPCUnavailable` naming every missing piece, if any."""
    missing = missing_ipc_support()
    if missing:
        raise IPCUnavailable(f"{describe(missing)} {ALTERNATIVES}")
