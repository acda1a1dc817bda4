"""Make this Linux interpreter look like a platform chanlite's IPC layer cannot use.

Put this directory first on ``PYTHONPATH`` and set ``CHANLITE_SIMULATE`` to a
comma-separated list (tests/platforms/test_platforms.py does; child processes inherit
both, so servers and workers started by the tests are simulated too):

- ``no-posix-ipc``: ``import posix_ipc`` fails as where it is not installed;
- ``no-posix``: also what Windows lacks and chanlite could be tempted to use —
  ``fcntl``, ``socket.AF_UNIX``, ``os.fork`` and ``os.register_at_fork``,
  ``os.sched_yield``, ``select.poll``/``epoll``, signals other than
  SIGINT/SIGTERM (and the few Windows also has), and ``ctypes.CDLL(None)``;
- ``macos``: ``posix_ipc`` without timed semaphores and a C library without
  ``pthread_mutex_consistent`` / ``pthread_mutexattr_setrobust``.

Anything of chanlite outside the IPC layer that uses a hidden name then
fails with an AttributeError or ImportError, which is the point.
"""

from __future__ import annotations

import os
import sys

_MODES = {m for m in os.environ.get("CHANLITE_SIMULATE", "").split(",") if m}


class _Blocker:
    """A meta-path finder that makes some top-level imports fail."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (simulated platform)", name=name)
        return None


def _hide(module, name: str) -> None:  # noqa: ANN001
    """Remove ``name`` from ``module`` and its ``__all__`` (libraries that
    copy a module's names, e.g. trio's socket, read ``__all__``)."""
    if hasattr(module, name):
        delattr(module, name)
    names = getattr(module, "__all__", None)
    if isinstance(names, list) and name in names:
        names.remove(name)


def _no_posix() -> None:
    import select
    import selectors
    import signal
    import socket

    for name in ("fcntl",):
        sys.modules.pop(name, None)
    _hide(socket, "AF_UNIX")

    def socketpair(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=0):  # noqa: A002, ANN001
        # CPython's own emulation on Windows: a connected pair over loopback TCP.
        with socket.socket(family, type, proto) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            a = socket.socket(family, type, proto)
            a.connect(listener.getsockname())
            b, _ = listener.accept()
        return a, b

    socket.socketpair = socketpair
    for name in ("fork", "forkpty", "register_at_fork", "sched_yield"):
        _hide(os, name)
    for name in ("poll", "epoll", "devpoll", "kqueue"):
        _hide(select, name)
    for name in ("PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector"):
        _hide(selectors, name)
    selectors.DefaultSelector = selectors.SelectSelector
    windows_has = {"SIGINT", "SIGTERM", "SIGABRT", "SIGFPE", "SIGILL", "SIGSEGV"}
    for name in [n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")]:
        if name not in windows_has:
            _hide(signal, name)
    for name in ("alarm", "setitimer", "getitimer", "pause", "pthread_kill", "sigwait"):
        _hide(signal, name)
    import subprocess

    # The host is still Linux underneath: subprocess needs a selector it can
    # build, and Popen.kill (SIGKILL, hidden above) is terminate(), as on Windows.
    subprocess._PopenSelector = selectors.SelectSelector
    subprocess.Popen.kill = subprocess.Popen.terminate

    import ctypes

    real_cdll = ctypes.CDLL

    def cdll(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if name is None:  # as on Windows: no "the C library of this process"
            raise TypeError("LoadLibrary() argument 1 must be str, not None (simulated)")
        return real_cdll(name, *args, **kwargs)

    ctypes.CDLL = cdll


def _macos() -> None:
    import ctypes

    real_cdll = ctypes.CDLL
    hidden = {"pthread_mutex_consistent", "pthread_mutexattr_setrobust"}

    class MacLibc(real_cdll):
        def __getattr__(self, name):  # noqa: ANN001
            if name in hidden:
                raise AttributeError(f"dlsym: symbol not found: {name} (simulated macOS)")
            return super().__getattr__(name)

        def __getitem__(self, name):  # noqa: ANN001
            if name in hidden:
                raise AttributeError(f"dlsym: symbol not found: {name} (simulated macOS)")
            return super().__getitem__(name)

    ctypes.CDLL = MacLibc
    try:
        import posix_ipc
    except ImportError:
        return
    posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED = False


blocked = set()
if "no-posix-ipc" in _MODES or "no-posix" in _MODES:
    blocked.add("posix_ipc")
    sys.modules.pop("posix_ipc", None)
if "no-posix" in _MODES:
    blocked.add("fcntl")
if blocked:
    sys.meta_path.insert(0, _Blocker(blocked))
if "no-posix" in _MODES:
    _no_posix()
if "macos" in _MODES:
    _macos()
