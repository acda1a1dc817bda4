"""When a blocking receive may spin: only while a core is spare.

Why: a receiver that spins (watching the push counter, yielding the core on
each read) saves a doorbell sleep and wake-up when its message comes within
microseconds — on a machine with a core to spare. When every core is busy
(a CPU-bound neighbour per core, a loaded CI host) the spinner takes CPU
from the very sender it waits for, and each ``sched_yield`` may hand the
core to a neighbour for a whole time slice: W3 fell to 0.64x
``multiprocessing.Queue`` under background load (issue 16). So the spin
runs only when the tasks that can run right now (this one included) fit
the cores, and stops as soon as one yield shows another task got the core.

The count of runnable tasks is the kernel's instantaneous one (the fourth
field of ``/proc/loadavg``, "running/total"), not the 1-minute load
average, which would lag a change of load by a minute; it is read at most
every ``CHECK_INTERVAL`` seconds per process, so a receive pays a clock
read, not a file read. Where ``/proc/loadavg`` cannot be read the 1-minute
load average stands in.
"""

from __future__ import annotations

import os
import time

__all__ = ["CHECK_INTERVAL", "YIELD_LOST_CORE", "spare_core"]

#: seconds between two reads of the runnable-task count (per process)
CHECK_INTERVAL = 0.05
#: a ``sched_yield`` that took this long gave the core to another task:
#: no core is spare, so the spin stops (a free core's yield takes ~1 µs)
YIELD_LOST_CORE = 0.0001

_CPUS = os.cpu_count() or 1


class _Last:
    """The last read: when (monotonic) and its answer."""

    checked = -CHECK_INTERVAL
    answer = True


def runnable_tasks() -> float:
    """Tasks runnable on this host right now (this one included)."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return float(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]


def spare_core(now: float | None = None) -> bool:
    """Whether the runnable tasks fit the cores, so a spin burns an idle
    core rather than a busy neighbour's (cached for CHECK_INTERVAL s)."""
    if now is None:
        now = time.monotonic()
    if now - _Last.checked < CHECK_INTERVAL:
        return _Last.answer
    _Last.answer = answer = runnable_tasks() <= _CPUS
    _Last.checked = now
    return answer
