"""Start-up marks of a trial, for `benchmarks/trial_startup.py`: where the seconds between a
trial's start and its first report go. Off (one environment lookup) unless CLIPSWEEP_STARTUP_LOG
names a file; each process appends one JSON line per mark, its first time in a trial only. A local Ray's
workers inherit the variable from the driver that starts Ray.
"""

from __future__ import annotations

import json
import os
import time

LOG_ENV = "CLIPSWEEP_STARTUP_LOG"
_seen: set[str] = set()


def mark(event: str, begins: bool = False, **fields: float | str) -> None:
    """Appends `{event, t (wall clock), pid, **fields}` to the log, once per event and trial:
    `begins` marks the start of a trial's work in this process (Ray reuses worker processes
    across trials), after which every event is logged again."""
    path = os.environ.get(LOG_ENV)
    if not path or event in _seen and not begins:
        return
    if begins:
        _seen.clear()
    _seen.add(event)
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}) + "\n")


def process_start() -> float:
    """When this process started (wall clock), from the kernel's record of it."""
    import psutil  # a Ray dependency; only read when marking

    return psutil.Process().create_time()
