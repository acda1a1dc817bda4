"""Helpers and child-process bodies for the IPC layer's tests (its fixtures,
``ipc_prefix`` and ``make_ipc``, are in tests/conftest.py).

Every test uses its own prefix and removes it afterwards, then asserts that
nothing of it is left in /dev/shm, so the suite never leaks segments or
semaphores (and a leak is a test failure, not a silent cost).
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import struct
import sys
import time

from chanlite.layers.ipc import IPCChannelLayer, remove_prefix
from chanlite.testing import eventually

_counter = itertools.count()

#: small tables and heap: fast to create, still fits a 1 MiB message
SMALL = {"memory": 4 << 20, "max_channels": 512, "max_groups": 64}


class ReplayClock:
    """A fake clock that a test may set back, to replay one scenario from the
    same instant (the kill-at-every-line tests run an operation hundreds of
    times from one state, whose expiry times must match exactly).

    ``FakeClock`` is documented as never going back, because the layers keep
    queues sorted by expiry; so these tests use this clock instead, and set it
    back with :meth:`replay_from` only just before the scenario's setup
    flushes the layer, so no message outlives the instant it was stored at.
    """

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0), as ``FakeClock.advance``."""
        if seconds < 0:
            raise ValueError(
                f"ReplayClock.advance() cannot go back ({seconds!r}): use replay_from()")
        self._now += seconds
        return self._now

    def replay_from(self, instant: float) -> None:
        """Set the time back to ``instant`` for the next replay of a scenario."""
        self._now = float(instant)


def unique_prefix() -> str:
    return f"t{os.getpid()}x{next(_counter)}{secrets.token_hex(3)}"


def leftovers(prefix: str) -> list[str]:
    """Files of ``prefix`` in /dev/shm (segment and ``sem.`` doorbells)."""
    tag = f"chanlite.{prefix}"
    return sorted(
        name for name in os.listdir("/dev/shm") if name == tag or name.startswith(f"sem.{tag}.")
    )


def record(fd: int, *values: int) -> None:
    """Append one fixed-size record to a log file: a SIGKILL cannot tear it."""
    os.write(fd, struct.pack("<3q", *values, *([0] * (3 - len(values)))))


def read_records(path: str) -> list[tuple[int, int, int]]:
    with open(path, "rb") as f:
        data = f.read()
    size = struct.calcsize("<3q")
    return [struct.unpack_from("<3q", data, i) for i in range(0, len(data) - size + 1, size)]


# ---------------------------------------------------------------- children
# (run in forked processes: they build their own layer from the prefix)


def sender_main(prefix: str, sender_id: int, start: int, count: int, log_path: str,
                channels: list[str], capacity: int = 10**6) -> None:
    """Send ``(sender_id, seq)`` for seq in [start, start+count), round robin over
    ``channels``; log each seq after ``send`` returned (so a seq logged is sent)."""
    layer = IPCChannelLayer(prefix=prefix, **SMALL, capacity=capacity)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for seq in range(start, start + count):
        channel = channels[seq % len(channels)]
        deadline = time.monotonic() + 60  # a channel full that long: no receiver left
        while True:
            try:
                layer.send(channel, {"s": sender_id, "q": seq})
                break
            except layer.ChannelFull:
                if time.monotonic() > deadline:
                    print(f"sender {sender_id}: {channel!r} full for 60 s at seq {seq}",
                          file=sys.stderr)
                    os._exit(3)
                time.sleep(0.001)  # back-pressure: poll until a receiver makes room
        record(fd, sender_id, seq)
    os._exit(0)


def receiver_main(prefix: str, log_path: str, channels: list[str]) -> None:
    """Receive from ``channels`` (blocking) and log ``(sender, seq, channel
    index)`` after each message; exit on a message on ``ctl`` (or 30 s idle,
    so a broken test cannot leave it running)."""
    layer = IPCChannelLayer(prefix=prefix, **SMALL, capacity=10**6)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    index = {name: i for i, name in enumerate(channels)}
    while True:
        channel, message = layer.receive(channels + ["ctl"], block=True, timeout=30)
        if channel is None or channel == "ctl":
            os._exit(0)
        queue = channel.split("!")[0] + "!" if "!" in channel else channel
        record(fd, message["s"], message["q"], index[queue])


def fork(fn, *args) -> int:
    """Run ``fn(*args)`` in a forked child (cheap, so chaos can fork hundreds)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            fn(*args)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(1)
    return pid


def wait_exit(pid: int, timeout: float) -> int:
    """Wait up to ``timeout`` s for ``pid``; return its status or fail clearly
    (killing and reaping it first, so a hung child does not outlive the test)."""

    def reaped() -> tuple[int, int] | None:
        done, status = os.waitpid(pid, os.WNOHANG)
        return (done, status) if done else None  # a tuple: truthy even for status 0

    try:
        return eventually(reaped, f"process {pid} to finish", timeout=timeout)[1]
    except AssertionError:
        kill(pid)
        os.waitpid(pid, 0)
        raise


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


__all__ = [
    "SMALL",
    "fork",
    "kill",
    "wait_exit",
    "leftovers",
    "read_records",
    "receiver_main",
    "record",
    "remove_prefix",
    "sender_main",
    "unique_prefix",
]
