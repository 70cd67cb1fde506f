"""Seconds since this *process* started, so that 'time to solve' includes interpreter start-up
and imports, as a user waiting at the terminal experiences it."""

from __future__ import annotations

import os
import time

_IMPORTED_AT = time.time()


def _process_start() -> float:
    """Wall-clock time at which this process started (Linux: from /proc, 10 ms resolution;
    elsewhere: when this module was imported)."""
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        start_since_boot = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        elapsed = time.clock_gettime(time.CLOCK_BOOTTIME) - start_since_boot
    except (OSError, IndexError, ValueError, AttributeError):
        return _IMPORTED_AT
    if not 0.0 <= elapsed <= time.time() - _IMPORTED_AT + 60.0:
        return _IMPORTED_AT
    return time.time() - elapsed


PROCESS_START = _process_start()


def since_process_start() -> float:
    return time.time() - PROCESS_START


def restart() -> None:
    """Count from now instead: a sweep's trial is timed from its own start, whether it has a
    process to itself (local) or shares a long-lived worker process with others (Ray)."""
    global PROCESS_START
    PROCESS_START = time.time()
