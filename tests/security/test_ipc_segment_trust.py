"""Issue 13, item 2: IPC segments and doorbells another user planted, and
segments whose contents are corrupt.

* new segments and doorbells are created exclusively, with exactly the
  configured ``mode``; an existing one owned by another uid or with a wider
  mode is refused with an error that says so (ownership is simulated with
  ``chown`` when the tests run as root, and with a too-wide mode always);
* a corrupt segment (header, queue table, journal, heap garbage, a
  truncated file) gives ``IPCCorrupt`` from the layer and from
  ``manage.py chanlite_ipc --check`` within a bound: never a hang, never a
  raw ``struct.error``/``IndexError``. Operations on garbage run in a forked
  child so that a hang is a bounded failure, not a stuck suite;
* a constructor that fails validation leaves nothing in /dev/shm.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import sys

import posix_ipc
import pytest
from django.core.management import CommandError, call_command

from chanlite.layers._ipc_layout import ENTRY, H_QSLOTS, H_SIZE
from chanlite.layers.ipc import (
    IPCChannelLayer,
    IPCCorrupt,
    IPCError,
    IPCPermissionError,
)

from ..layers.ipc_helpers import SMALL, fork, leftovers, wait_exit

BOUND = 10.0


def _plant(prefix: str, mode: int) -> None:
    """Another user's segment: an empty file with ``mode`` (umask ignored)."""
    shm = posix_ipc.SharedMemory(f"/chanlite.{prefix}", posix_ipc.O_CREX, mode=mode)
    os.fchmod(shm.fd, mode)
    shm.close_fd()


def _mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


# ------------------------------------------------------------- ownership


def test_new_segment_and_doorbells_get_exactly_the_configured_mode(ipc_prefix):
    old = os.umask(0o077)  # the umask must not narrow what was configured ...
    try:
        layer = IPCChannelLayer(prefix=ipc_prefix, mode=0o660, **SMALL)
        layer._store.bell(0)  # the doorbell a blocking receive opens first
    finally:
        os.umask(old)
    os.umask(0)  # ... nor widen the default
    try:
        assert _mode(f"/dev/shm/chanlite.{ipc_prefix}") == 0o660
        assert _mode(f"/dev/shm/sem.chanlite.{ipc_prefix}.w0") == 0o660
        layer.remove()
        layer = IPCChannelLayer(prefix=ipc_prefix, **SMALL)
        layer._store.bell(0)
    finally:
        os.umask(old)
    assert _mode(f"/dev/shm/chanlite.{ipc_prefix}") == 0o600
    assert _mode(f"/dev/shm/sem.chanlite.{ipc_prefix}.w0") == 0o600
    layer.close()


@pytest.mark.parametrize("bad", [0o602, 0o640, 0o666])
def test_a_segment_with_a_wider_mode_is_refused(ipc_prefix, bad):
    _plant(ipc_prefix, bad)
    wider = f"mode {bad:04o}, wider than the layer's mode 0600"
    with pytest.raises(IPCPermissionError, match=wider):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    assert os.stat(f"/dev/shm/chanlite.{ipc_prefix}").st_size == 0, "it was written to"
    # what was configured is accepted, and a narrower segment is always fine
    IPCChannelLayer(prefix=ipc_prefix, mode=0o666, **SMALL).close()


def test_a_segment_of_another_uid_is_refused(ipc_prefix):
    if os.geteuid() != 0:
        print("(not root: chown to another uid is impossible; the mode test covers planting)",
              file=sys.stderr)
        pytest.skip("changing a file's owner needs root")
    _plant(ipc_prefix, 0o600)
    os.chown(f"/dev/shm/chanlite.{ipc_prefix}", 54321, 54321)
    foreign = "belongs to uid 54321, not to this process's uid 0"
    with pytest.raises(IPCPermissionError, match=foreign):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    with pytest.raises(CommandError, match="belongs to uid 54321"):
        call_command("chanlite_ipc", "--prefix", ipc_prefix, "--check", stdout=io.StringIO())


def test_a_planted_doorbell_is_not_used(make_ipc, caplog):
    """A doorbell that is too open could be rung (or watched) by others: it is
    refused (logged), and the receiver on that slot polls instead of failing."""
    layer = make_ipc()
    name = f"/chanlite.{layer.prefix}.w0"
    sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o666, initial_value=5)
    os.chmod(f"/dev/shm/sem{name.replace('/', '.')}", 0o666)
    sem.close()
    assert layer.receive(["a"], block=True, timeout=0.05) == (None, None)  # not woken 5 times
    assert "mode 0666, wider than the layer's mode 0600" in caplog.text

    def child():
        layer.send("a", {"n": 1})
        os._exit(0)

    assert wait_exit(fork(child), BOUND) == 0
    assert layer.receive(["a"], block=True, timeout=BOUND) == ("a", {"n": 1})


# ----------------------------------------------------------- corruption


def _bounded(fn) -> str:
    """Run ``fn`` in a forked child; return ``'TypeName: message'`` of what it
    raised ('' if nothing), failing if it takes longer than BOUND."""
    read_end, write_end = os.pipe()

    def child():
        try:
            fn()
            os.write(write_end, b"")
        except BaseException as exc:  # noqa: BLE001 - the error is the result
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:4000])
        os._exit(0)

    pid = fork(child)
    assert wait_exit(pid, BOUND) == 0
    os.close(write_end)
    out = os.read(read_end, 5000).decode()
    os.close(read_end)
    return out


def _check_command(prefix: str) -> str:
    def run():
        call_command("chanlite_ipc", "--prefix", prefix, "--check", stdout=io.StringIO())

    return _bounded(run)


def _patch(prefix: str, offset: int, data: bytes) -> None:
    shm = posix_ipc.SharedMemory(f"/chanlite.{prefix}")
    mm = mmap.mmap(shm.fd, shm.size)
    mm[offset : offset + len(data)] = data
    mm.close()
    shm.close_fd()


def _filled(prefix: str) -> tuple[int, int, int]:
    """A closed segment with messages and a group: (qtable, gtable, heap)."""
    layer = IPCChannelLayer(prefix=prefix, **SMALL)
    for i in range(5):
        layer.send("q", {"i": i})
    layer.group_add("g", "q")
    layer.group_add("g", "r")
    store = layer._store
    where = store.qtable, store.gtable, store.heap
    layer.close()
    return where


def _use(prefix: str):
    def run():
        layer = IPCChannelLayer(prefix=prefix, **SMALL)
        layer.send("q", {"n": 1})
        layer.receive(["q"])
        layer.group_channels("g")
        layer.send("fresh", {"n": 2})

    return run


@pytest.mark.parametrize("damage", ["header", "truncated", "queue table", "group list",
                                    "heap", "journal"])
def test_a_corrupt_segment_is_reported_not_hung(ipc_prefix, damage):
    qtable, gtable, heap = _filled(ipc_prefix)
    path = f"/dev/shm/chanlite.{ipc_prefix}"
    if damage == "header":
        _patch(ipc_prefix, H_QSLOTS, struct.pack("<I", 3))
    elif damage == "truncated":
        os.truncate(path, os.stat(path).st_size // 2)
    elif damage == "queue table":  # every slot used: a lookup never finds a free one
        size = gtable - qtable
        _patch(ipc_prefix, qtable, b"\xff" * size)
    elif damage == "group list":  # a member pointing at itself
        shm = posix_ipc.SharedMemory(f"/chanlite.{ipc_prefix}")
        mm = mmap.mmap(shm.fd, shm.size)
        for i in range(ENTRY and (heap - gtable) // ENTRY):
            e = gtable + i * ENTRY
            if struct.unpack_from("<I", mm, e)[0]:
                (head,) = struct.unpack_from("<Q", mm, e + 8)
                struct.pack_into("<Q", mm, head + 8, head)  # next = itself
                struct.pack_into("<I", mm, e + 24, 10**6)  # and a huge count
        mm.close()
        shm.close_fd()
    elif damage == "heap":  # the first message block's header is garbage
        shm = posix_ipc.SharedMemory(f"/chanlite.{ipc_prefix}")
        mm = mmap.mmap(shm.fd, shm.size)
        for i in range((gtable - qtable) // ENTRY):
            e = qtable + i * ENTRY
            if struct.unpack_from("<I", mm, e)[0] and struct.unpack_from("<I", mm, e + 24)[0]:
                (head,) = struct.unpack_from("<Q", mm, e + 8)
                mm[head : head + 8] = b"\xff" * 8
        mm.close()
        shm.close_fd()
    else:  # journal: an operation "in progress" whose saved bytes point anywhere
        _patch(ipc_prefix, 104, struct.pack("Q", 64))
        _patch(ipc_prefix, 4096, struct.pack("<QI", 2**40, 52))
    error = _bounded(_use(ipc_prefix))
    assert error.startswith("IPCCorrupt: ") and "--remove" in error, error
    report = _check_command(ipc_prefix)
    assert report.startswith("CommandError: ") and "corrupt" in report, report


def test_a_truncated_header_and_a_size_mismatch_say_so(ipc_prefix):
    _filled(ipc_prefix)
    _patch(ipc_prefix, H_SIZE, struct.pack("<Q", 123456789))
    with pytest.raises(IPCCorrupt, match="header says 123456789 bytes"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    os.truncate(f"/dev/shm/chanlite.{ipc_prefix}", 100)
    with pytest.raises(IPCCorrupt, match="only 100 bytes"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)


# -------------------------------------------- failed constructors leave nothing


def test_a_refused_configuration_leaves_nothing_in_dev_shm(ipc_prefix, monkeypatch):
    with pytest.raises(ValueError, match="max_message_size"):
        IPCChannelLayer(prefix=ipc_prefix, **{**SMALL, "memory": 2 << 20},
                        max_message_size=4 << 20)
    assert leftovers(ipc_prefix) == []
    with pytest.raises(ValueError, match="too small for max_channels"):
        IPCChannelLayer(prefix=ipc_prefix, memory=1 << 20, max_channels=1 << 20)
    assert leftovers(ipc_prefix) == []
    with pytest.raises(ValueError, match="mode"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL, mode=0o644 | 0o1000)
    assert leftovers(ipc_prefix) == []

    def no_space(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(IPCError, match="lower 'memory'"):
        IPCChannelLayer(prefix=ipc_prefix, **SMALL)
    assert leftovers(ipc_prefix) == []
