# What machine and interpreter produced a figure, and whether the CPUs were quiet enough to
# time anything. Reports, benchmarks and the CLI all describe the environment through here.

import os
import platform
import sys
import sysconfig
import time
from dataclasses import dataclass

__all__ = ["usable_cores", "gil_enabled", "interpreter_label", "describe", "IdleCheck",
           "wait_for_idle_cpus"]


def _cgroup_cpu_limit() -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota (``cpu.max``), or None when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(int(quota) // int(period)))


def usable_cores() -> int:
    """How many CPUs this process may really use: its affinity mask (process_cpu_count on
    3.13+), capped by a cgroup CPU quota. Never less than 1."""
    if hasattr(os, "process_cpu_count"):
        count = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0)) or 1
    else:
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return min(count, limit) if limit else count


def gil_enabled() -> bool:
    """True when this interpreter runs with the GIL (always, before 3.13)."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def is_free_threaded_build() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def interpreter_label(version: tuple[int, ...] | None = None,
                      free_threaded: bool | None = None) -> str:
    """Short name of an interpreter: '3.11', or '3.13t' for a free-threaded build. This
    one's by default; another's from the ``version`` (sys.version_info) and the
    ``free_threaded`` build flag that it reported."""
    major, minor = (sys.version_info if version is None else version)[:2]
    free_threaded = is_free_threaded_build() if free_threaded is None else free_threaded
    return f"{major}.{minor}{'t' if free_threaded else ''}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """The facts a report needs next to every figure."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "interpreter": interpreter_label(),
        "executable": sys.executable,
        "free_threaded_build": is_free_threaded_build(),
        "gil_enabled": gil_enabled(),
        "cpu_model": cpu_model(),
        "usable_cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
    }


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user time
    return total - idle, total


@dataclass
class IdleCheck:
    """Outcome of waiting for quiet CPUs before timing."""

    idle: bool
    busy_cores: float
    waited_s: float
    measured: bool = True

    def describe(self) -> str:
        if not self.measured:
            return "CPU load unknown (/proc/stat unreadable)"
        state = "idle" if self.idle else "NOT idle: another job was using"
        return f"CPUs {state} {self.busy_cores:.2f} cores (waited {self.waited_s:.1f} s)"


def busy_cores(sample_s: float = 0.25) -> float | None:
    """Cores' worth of CPU time used by everything on the machine over ``sample_s``."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(sample_s)
    second = _cpu_times()
    busy, total = second[0] - first[0], second[1] - first[1]
    return 0.0 if total <= 0 else (os.cpu_count() or 1) * busy / total


def wait_for_idle_cpus(max_busy_cores: float = 0.3, timeout_s: float = 30.0,
                       sample_s: float = 0.25) -> IdleCheck:
    """Wait until the machine's other load is below ``max_busy_cores`` cores, or
    ``timeout_s`` passed. Never raises: the result says whether the CPUs were idle, so a
    report can say its figures came from a busy machine."""
    start = time.monotonic()
    while True:
        load = busy_cores(sample_s)
        waited = time.monotonic() - start
        if load is None:
            return IdleCheck(idle=False, busy_cores=float("nan"), waited_s=waited, measured=False)
        if load <= max_busy_cores or waited >= timeout_s:
            return IdleCheck(idle=load <= max_busy_cores, busy_cores=load, waited_s=waited)
