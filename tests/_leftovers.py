# What the compare tests check is left behind after a run: this process's child processes
# and threads, less those that a library keeps for the whole process by design.

import multiprocessing
import os
import threading
import time

__all__ = ["child_pids", "threads_left", "DASK_OFFLOAD"]

# The thread of distributed's process-wide offload pool: started by the first Dask cluster,
# kept and reused by every later one, never one per cluster.
DASK_OFFLOAD = "Dask-Offload"


def child_pids() -> set[int]:
    """Our live child processes, less multiprocessing's and loky's resource trackers
    (one per interpreter, by design alive until it exits)."""
    me = os.getpid()
    try:
        tasks = os.listdir(f"/proc/{me}/task")
        pids = set()
        for task in tasks:
            with open(f"/proc/{me}/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        return {p.pid for p in multiprocessing.active_children()}

    def is_tracker(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"resource_tracker" in f.read()
        except OSError:
            return True  # already gone

    return {p for p in pids if not is_tracker(p)}


def threads_left(before: set[threading.Thread], patience_s: float = 10.0) -> set:
    """The threads alive now that were not in ``before``, once each has had
    ``patience_s`` to end (a closed queue's feeder thread may take a moment), less Dask's
    one process-wide offload thread."""
    for thread in set(threading.enumerate()) - before:
        if not thread.name.startswith(DASK_OFFLOAD):
            thread.join(patience_s)
    return {t for t in threading.enumerate() if t.is_alive() and t not in before
            and not t.name.startswith(DASK_OFFLOAD)}


def process_gone(pid: int, patience_s: float = 60.0) -> bool:
    """Whether the process ``pid`` has exited and been reaped, within ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False
