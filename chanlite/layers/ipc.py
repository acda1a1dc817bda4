"""POSIX shared-memory channel layer: many processes on one host, no Redis.

Choose it when a server process and several ``runworker`` processes share
one machine. All processes that build an ``IPCChannelLayer`` with the same
``prefix`` share one segment, ``/dev/shm/chanlite.<prefix>``; another prefix
is a separate, fully isolated store.

Why it looks like this (details in docs/architecture.md, "IPC layer"):

* the rules live in :class:`~chanlite.layers.base.BaseChannelLayer`; this
  module only implements the storage hooks on :mod:`._ipc_store`, whose
  bounded structures make each operation independent of the backlog;
* the mutex is a robust pthread mutex the kernel hands over when its holder
  dies, and every change is journaled, so a SIGKILLed process neither blocks
  nor corrupts the others; every critical section ends in
  ``except BaseException as exc: raise lock.failed(exc)`` (in
  ``Store.run_locked``, the one lock helper), so an exception
  (KeyboardInterrupt, SystemExit, a bug) at any line is as harmless;
* a segment is used only if this uid made it with no wider mode than
  ``mode``, and its header must match its layout (``IPCCorrupt`` otherwise);
* a blocked receiver sleeps on its own POSIX semaphore ("doorbell"),
  registered on the queues it waits for; a sender rings the doorbells of a
  queue's waiters, so nobody polls.
"""

from __future__ import annotations

import enum
import os
import time
from typing import Any

from ._ipc_platform import check_ipc_support

# Before anything POSIX-only is imported: on Windows, macOS or without
# posix_ipc, importing (hence configuring or constructing) this layer raises
# ImproperlyConfigured naming what is missing and the alternatives.
check_ipc_support()

import posix_ipc  # noqa: E402

from ._ipc_diag import info  # noqa: E402
from ._ipc_errors import (  # noqa: E402
    IPCCorrupt,
    IPCError,
    IPCFormatError,
    IPCLockTimeout,
    IPCMemoryFull,
    IPCPermissionError,
)
from ._ipc_layout import (  # noqa: E402
    JOURNAL_SIZE,
    PAGE,
    check_prefix,
    layout,
    message_order,
    table_slots,
)
from ._ipc_registry import close_store, forget_store, open_store  # noqa: E402
from ._ipc_segment import DEFAULT_MODE, remove_prefix  # noqa: E402
from ._ipc_store import Store, name_key  # noqa: E402
from .base import BaseChannelLayer  # noqa: E402
from .names import MAX_NAME_LENGTH, queue_for_send, remember  # noqa: E402

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_MODE",
    "IPCChannelLayer",
    "IPCCorrupt",
    "IPCError",
    "IPCFormatError",
    "IPCLockTimeout",
    "IPCMemoryFull",
    "IPCPermissionError",
    "remove_prefix",
]

#: 32 MiB: thousands of queued small messages plus a few 1 MiB ones, and it
#: fits Docker's default 64 MiB /dev/shm. Reserved (not sparse) at creation.
DEFAULT_MEMORY = 32 * 1024 * 1024
#: Receivers that find no free waiter slot (more than 128 blocked at once)
#: or no table room fall back to sleeping this long between attempts.
POLL_INTERVAL = 0.005
#: A blocked receiver re-checks its queues this often even without a ring:
#: the only ring that can be lost is one whose sender was killed between
#: committing a message and ringing (rings happen after unlocking, which
#: keeps wake-ups cheap). One check a second costs ~0.003 % of a core.
RING_SAFETY = 1.0
MIN_SPIN = 0.000005

DEFAULT_MAX_CHANNELS = 8192
DEFAULT_MAX_GROUPS = 2048


def _check_size(what: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} must be an int between {low} and {high}, not {value!r}")
    return value


def check_sizes(memory: Any = DEFAULT_MEMORY, max_channels: Any = DEFAULT_MAX_CHANNELS,
                max_groups: Any = DEFAULT_MAX_GROUPS) -> None:
    """The size settings' own rules (the layer's constructor and
    ``manage.py check`` both use them, without opening a segment)."""
    _check_size("memory", memory, 1 << 20, 1 << 40)
    _check_size("max_channels", max_channels, 1, 1 << 20)
    _check_size("max_groups", max_groups, 1, 1 << 20)


class IPCChannelLayer(BaseChannelLayer):
    """Channel layer in POSIX shared memory, shared by processes on one host.

    Parameters (besides those of :class:`BaseChannelLayer`):
        prefix: names the segment and semaphores (``/dev/shm/chanlite.<prefix>``
            and ``sem.chanlite.<prefix>.w*``); processes with the same prefix
            share channels, others are isolated.
        memory: segment size in bytes, reserved when the first process
            creates it (later processes use the existing size).
        max_channels: channels that may hold messages or waiters at once.
        max_groups: groups that may have members at once.
        spin: seconds a blocking receive that finds nothing may watch the
            segment's push counter (yielding the core each time) before it
            sleeps on its doorbell: once per call, halved on each miss down
            to nothing, restored by a quick wake-up. Replies and streams
            then skip two sleeps and wake-ups (W4 p50 ~95 -> ~32 µs); a
            receiver waiting long spins once. 0 never spins.
        mode: permission bits of the segment and doorbells this layer
            creates (default 0o600: this user only); an existing segment
            owned by another uid or with wider bits is refused.
        lock_timeout: seconds an operation may wait for the segment lock
            held by a live process before raising ``IPCLockTimeout``
            ("segment locked by pid N for X s"); None (default) waits,
            logging a warning every 10 s. A dead holder never makes anyone
            wait: its lock is handed over and its operation undone.
    """

    IPCMemoryFull = IPCMemoryFull

    def __init__(
        self,
        prefix: str = "chanlite",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Any = None,
        memory: int = DEFAULT_MEMORY,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        max_groups: int = DEFAULT_MAX_GROUPS,
        spin: float = 0.0002,
        mode: int = DEFAULT_MODE,
        lock_timeout: float | None = None,
        **config: Any,
    ) -> None:
        super().__init__(
            expiry=expiry,
            group_expiry=group_expiry,
            capacity=capacity,
            channel_capacity=channel_capacity,
            **config,
        )
        self.prefix = check_prefix(prefix)
        check_sizes(memory, max_channels, max_groups)
        if type(mode) is not int or mode & 0o600 != 0o600 or mode & ~0o777:
            raise ValueError(f"mode must be permission bits including 0o600 (owner read "
                             f"and write), e.g. 0o600 or 0o660, not {mode!r}")
        if lock_timeout is not None and (type(lock_timeout) not in (int, float)
                                         or not lock_timeout > 0):
            raise ValueError(f"lock_timeout must be None or seconds > 0, not {lock_timeout!r}")
        if type(spin) not in (int, float) or not 0 <= spin <= 0.01:
            raise ValueError(f"spin must be between 0 and 0.01 seconds, not {spin!r}")
        # Every check that can fail comes before the segment is created, so
        # a refused configuration leaves nothing behind in /dev/shm.
        heap, _, maxord = layout(memory, *table_slots(max_channels, max_groups), JOURNAL_SIZE)[2:]
        if heap + PAGE > memory:
            raise ValueError(
                f"memory={memory} is too small for max_channels={max_channels} and "
                f"max_groups={max_groups} (tables need {heap} bytes); raise 'memory'"
            )
        self._check_message_fits(maxord, memory)
        self._store: Store | None = open_store(prefix, memory, max_channels, max_groups, mode)
        store = self._store
        try:
            self._check_message_fits(store.maxord, store.size)  # an existing, smaller segment
        except ValueError:
            self.close()
            raise
        if lock_timeout is not None:
            store.lock_timeout = lock_timeout
        self._keys: dict[str, tuple[bytes, int]] = {}
        self.spin = float(spin)
        self._spin = self.spin  # adaptive budget: halves on a miss

    def _check_message_fits(self, maxord: int, size: int) -> None:
        needed = message_order(MAX_NAME_LENGTH, self.max_message_size)
        if needed > maxord:
            raise ValueError(
                f"the IPC segment for prefix {self.prefix!r} ({size} bytes) cannot hold "
                f"a message of max_message_size={self.max_message_size} bytes; raise "
                "'memory' (and remove the old segment) or lower 'max_message_size'"
            )

    # ------------------------------------------------------------ helpers

    def _key(self, name: str) -> tuple[bytes, int]:
        key = self._keys.get(name)
        return key if key is not None else remember(self._keys, name, name_key(name), 10000)

    def _open(self) -> Store:
        """The store, or IPCError if this layer is closed."""
        store = self._store
        if store is None:
            raise IPCError(f"{self!r} is closed")
        return store

    def _locked(self, method: str, *args: Any) -> Any:
        """Run the store's operation ``method`` as one critical section
        (:meth:`._ipc_store.Store.run_locked`, the one lock helper)."""
        store = self._open()
        return store.run_locked(getattr(store, method), *args)

    # ---------------------------------------------------------- storage

    def _push(self, queue: str, channel: str, data: bytes, expires: float, capacity: int,
              now: float) -> bool:
        key = self._keys.get(queue) or self._key(queue)
        chan = b"" if channel == queue else channel.encode("ascii")
        store = self._store
        assert store is not None, "the layer is closed"
        return store.run_locked(store.push, key[0], key[1], chan, data, expires, now, capacity)

    def _push_many(self, channels: list[str], data: bytes, expires: float, now: float) -> int:
        members = []
        for channel in channels:
            queue = queue_for_send(channel)
            qkey, qh = self._key(queue)
            chan = b"" if channel == queue else channel.encode("ascii")
            members.append((qkey, qh, chan, self.capacity_for(queue)))
        store = self._open()
        return store.run_locked(store.push_many, members, data, expires, now)

    def _receive(
        self, queues: list[str], block: bool, timeout: float | None
    ) -> tuple[str, bytes] | None:
        if len(queues) == 1:
            keys = [self._keys.get(queues[0]) or self._key(queues[0])]
        else:
            keys = [self._keys.get(q) or self._key(q) for q in queues]
        store = self._store
        assert store is not None, "the layer is closed"
        # A blocking receive that will spin on a miss tries one plain pop
        # first (a stream's consumer almost always finds a message): on a
        # miss it reads the push counter in the same critical section and
        # _wait starts with the spin. Without a spin, _wait pops again and
        # registers in one critical section (no lost wake-up).
        spin = bool(block and self._spin and (timeout is None or timeout > 0))
        if block and not spin:
            return self._wait(store, queues, keys, timeout)
        if spin:
            got = store.run_locked(store.pop_or_watch, keys, self.clock(), True)
        else:
            got = store.run_locked(store.pop, keys, self.clock())
        if type(got) is tuple:
            # (a forged name is shown, not trusted: the message itself is
            # checked by BaseChannelLayer.receive)
            return (got[1].decode("ascii", "replace") or queues[got[0]]), got[2]
        if spin:
            return self._wait(store, queues, keys, timeout, got)  # type: ignore[arg-type]
        return None

    def _wait(
        self, store: Store, queues: list[str], keys: list[tuple[bytes, int]],
        timeout: float | None, pushes: int | None = None,
    ) -> tuple[str, bytes] | None:
        """Register a doorbell on ``queues`` and sleep on it until a message comes.

        Registration happens in the same critical section as the failed pop,
        so a sender that queues a message afterwards sees the registration
        and rings; a ring before the sleep leaves the semaphore at 1.
        ``pushes``: the caller's pop just missed, with the push counter at
        that value (read under the same lock): start with the spin.
        """
        # _receive spins only if it popped first (and passes ``pushes``)
        wait = _Wait(store, keys, timeout, pushes, 0.0 if pushes is None else self._spin)
        # No try statement may sit inside this one (the steps and each of
        # their critical sections are functions of their own): whatever line
        # an exception hits, the slot is released (release_waiter is idempotent).
        try:
            got = self._run(wait)
            if wait.held[0] >= 0:
                store.run_locked(store.release_waiter, wait.held[0], keys, wait.held)
        except BaseException:
            if wait.held[0] >= 0 and self._store is not None:
                store.run_locked(store.release_waiter, wait.held[0], keys, wait.held)
            raise
        if got is None:
            return None
        return (got[1].decode("ascii", "replace") or queues[got[0]]), got[2]

    def _run(self, wait: _Wait) -> tuple[int, bytes, bytes] | None:
        """Drive :meth:`_step` from the first state to GOT or TIMED_OUT (the
        slot in ``wait.held`` is released by the caller)."""
        state = SPIN if wait.spin else POP
        while state is not GOT and state is not TIMED_OUT:
            state = self._step(state, wait)
        if state is TIMED_OUT:
            return None
        if wait.slept_at and time.perf_counter() - wait.slept_at < self.spin:
            self._spin = self.spin  # a quick answer: spin next time
        return wait.got

    def _step(self, state: WaitState, wait: _Wait) -> WaitState:
        """The transition function of a blocking receive: do ``state``'s
        work, return the next state.

        POP    one critical section: pop; on a miss read the push counter
               (a spin comes next) or register our doorbell on the queues
               -> GOT, SPIN, SLEEP (registered) or POLL (no slot or room)
        SPIN   adaptive spin, once per call: watch the push counter (no
               lock, no syscall); a stream's or a reply's next message
               usually comes sooner than a sleep/ring round trip. The budget
               halves on every miss, so sparse traffic stops spinning at
               once, and returns on a quick wake-up -> POP
        SLEEP  on the doorbell, at most RING_SAFETY s (a sender SIGKILLed
               between its commit and its ring must not strand us) -> POP,
               or TIMED_OUT past the deadline
        POLL   sleep POLL_INTERVAL -> POP, or TIMED_OUT past the deadline
        """
        store = wait.store
        if state is POP:
            got, registered, wait.pushes = store.run_locked(
                store.wait_step, wait.keys, self.clock(), wait.held, bool(wait.spin))
            if got is not None:
                wait.got = got
                return GOT
            if wait.spin:
                return SPIN
            return SLEEP if registered else POLL
        if state is SPIN:
            spin = wait.spin
            end = time.perf_counter() + (spin if wait.timeout is None else min(spin, wait.timeout))
            while store.pushes() == wait.pushes:
                os.sched_yield()  # a busy core goes to whoever has work
                if time.perf_counter() > end:
                    self._spin = spin / 2 if spin > 4 * MIN_SPIN else 0.0
                    break
            wait.spin = 0.0
            return POP
        remaining = None if wait.deadline is None else wait.deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return TIMED_OUT
        if state is SLEEP:
            wait.slept_at = time.perf_counter()
            self._sleep(store, wait.held[0],
                        RING_SAFETY if remaining is None else min(remaining, RING_SAFETY))
        else:
            time.sleep(POLL_INTERVAL if remaining is None else min(remaining, POLL_INTERVAL))
        return POP

    @staticmethod
    def _sleep(store: Store, slot: int, wait: float) -> None:
        """Sleep on doorbell ``slot`` for at most ``wait`` seconds."""
        try:
            store.bell(slot).acquire(wait)
        except (posix_ipc.BusyError, posix_ipc.SignalError):
            pass  # timed out or interrupted: check once more
        except IPCPermissionError:  # a planted doorbell (logged): poll
            time.sleep(min(wait, POLL_INTERVAL))

    def _group_add(self, group: str, channel: str, now: float) -> None:
        gkey, gh = self._key(group)
        store = self._open()
        store.run_locked(store.group_add, gkey, gh, channel.encode("ascii"), now)

    def _group_discard(self, group: str, channel: str) -> None:
        gkey, gh = self._key(group)
        store = self._open()
        store.run_locked(store.group_discard, gkey, gh, channel.encode("ascii"))

    def _group_members(self, group: str, added_after: float) -> list[str]:
        gkey, gh = self._key(group)
        store = self._open()
        return store.run_locked(store.group_members, gkey, gh, added_after)

    def _flush(self) -> None:
        store = self._open()
        store.run_locked(store.flush_locked)

    def _queue_stats(self, queue: str, now: float) -> tuple[int, float | None, int]:
        qkey, qh = self._key(queue)
        store = self._open()
        return store.run_locked(store.queue_stats, qkey, qh, now)

    def _global_stats(self, now: float) -> tuple[int, int]:
        store = self._open()
        return store.run_locked(store.global_stats, now)

    # ------------------------------------------------------- lifecycle

    def segment_info(self) -> dict[str, Any]:
        """Figures about the segment itself (``manage.py chanlite_ipc --stats``)."""
        store = self._open()
        return store.run_locked(info, store)

    def check(self) -> dict[str, int]:
        """Verify every invariant of the shared store; raises ``IPCCorrupt``."""
        store = self._open()
        return store.run_locked(store.check)

    def dump(self) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
        """Every queued message and group member, read without changing them."""
        store = self._open()
        return store.run_locked(store.dump)

    def attached_pids(self) -> list[int]:
        """Other live processes using this prefix (``chanlite_ipc --remove``)."""
        store = self._store
        if store is None:
            return []
        return store.attached_pids()

    def detached(self) -> str | None:
        """Why this process no longer shares its segment (removed from
        /dev/shm), else None. Workers check it and exit rather than serve a
        private copy nobody else sees."""
        store = self._store
        return None if store is None else store.detached()

    def close(self) -> None:
        """Detach from the segment (it stays for the other processes)."""
        if self._store is not None:
            self._store = None
            close_store(self.prefix)

    def remove(self) -> None:
        """Detach and delete this prefix's segment and doorbells from /dev/shm."""
        self.close()
        remove_prefix(self.prefix)

    @staticmethod
    def remove_prefix(prefix: str) -> bool:
        """Delete ``prefix``'s segment and doorbells; True if a segment existed.

        Stop every process using the prefix first: processes still attached
        keep a private copy that nobody else sees any more.
        """
        forget_store(prefix)
        return remove_prefix(prefix)

    def __repr__(self) -> str:
        return (
            f"<IPCChannelLayer prefix={self.prefix!r} expiry={self.expiry} "
            f"capacity={self.capacity}>"
        )


class WaitState(enum.Enum):
    """The states of a blocking receive (see :meth:`IPCChannelLayer._step`)."""

    POP = "pop"
    SPIN = "spin"
    SLEEP = "sleep"
    POLL = "poll"
    GOT = "got"
    TIMED_OUT = "timed out"


class _Wait:
    """What one blocking receive carries from state to state."""

    __slots__ = ("deadline", "got", "held", "keys", "pushes", "slept_at", "spin", "store",
                 "timeout")

    def __init__(self, store: Store, keys: list[tuple[bytes, int]], timeout: float | None,
                 pushes: int | None, spin: float) -> None:
        self.store = store
        self.keys = keys
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        #: the push counter at the last miss (what SPIN watches)
        self.pushes = pushes
        #: spin budget left for this call (0 after one spin)
        self.spin = spin
        #: our waiter slot; claim/release set it before they commit
        self.held = [-1]
        #: when the last doorbell sleep began (a quick wake-up restores the spin)
        self.slept_at = 0.0
        self.got: tuple[int, bytes, bytes] | None = None


#: the states as plain module names: ``WaitState.POP`` costs a class
#: attribute lookup at each of a blocking receive's transitions
POP, SPIN, SLEEP, POLL, GOT, TIMED_OUT = WaitState
