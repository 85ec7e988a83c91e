"""Threads for a busy machine: torch's intra-op threads fitted to the cores other processes leave free.

PyTorch starts one intra-op thread per core. When other processes already keep the cores busy, those threads
wait on each other at every parallel region (a thread that lost its core holds up the rest): measured on 2 cores
beside 2 CPU-burning processes, timing the demo's ResNet-20 (5 training steps and forward passes) took 8.3 s with 2
threads and 4.4 s with 1 (README, "On a busy machine"). :func:`fit_threads` counts the processes running now
(``/proc/loadavg``'s running tasks, sampled a few times: an instant figure, where the load average lags a minute)
and lowers the threads to the cores left, never below one and never above what torch would use. An explicit
``OMP_NUM_THREADS`` or ``GRAFT_THREADS`` is always kept.
"""

from __future__ import annotations

import os
import statistics
import time

SAMPLES = 5  # readings of the running tasks, SAMPLE_GAP seconds apart (their median)
SAMPLE_GAP = 0.01


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(samples: int = SAMPLES) -> int | None:
    """How many other tasks are running now (the median of ``samples`` readings), or None where the system does
    not say (no /proc/loadavg: macOS, Windows)."""
    readings = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        readings.append(max(0, running - 1))  # less this process, which is running as it reads
        if i + 1 < samples:
            time.sleep(SAMPLE_GAP)
    return int(statistics.median(readings))


def fit_threads(log=None) -> int | None:
    """Lower torch's intra-op threads to the cores other running processes leave free (at least 1); return the
    count before, to restore it with ``torch.set_num_threads``, or None when nothing changed (an idle machine, an
    explicit ``OMP_NUM_THREADS``, or a system that does not say what runs). ``GRAFT_THREADS=N`` sets them to N."""
    import torch

    explicit = os.environ.get("GRAFT_THREADS")
    if explicit:
        try:
            count = max(1, int(explicit))
        except ValueError:
            from graft.errors import GraftError

            raise GraftError("GRAFT_THREADS as a whole number of threads", repr(explicit),
                             "set GRAFT_THREADS=2, or unset it to let graft decide") from None
        have = torch.get_num_threads()
        torch.set_num_threads(count)
        return have
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    others = busy_cores()
    if others is None:
        return None
    have = torch.get_num_threads()
    want = max(1, min(have, cores() - others))
    if want >= have:
        return None
    torch.set_num_threads(want)
    if log is not None:
        log(f"the machine is busy ({others} other process{'es' if others != 1 else ''} running on {cores()} "
            f"cores): torch uses {want} thread{'s' if want != 1 else ''} instead of {have} (GRAFT_THREADS=N sets it)")
    return have
