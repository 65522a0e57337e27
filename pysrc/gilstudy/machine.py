"""What machine and interpreter produced a figure, and whether the CPUs were quiet enough to
time anything: before timing (wait_for_idle_cpus) and during it (LoadSampler, the CPU that
other processes used while a timed run went on). Reports, benchmarks and the CLI all
describe the environment through here.
"""

import os
import platform
import resource
import sys
import sysconfig
import time
from dataclasses import dataclass

__all__ = ["usable_cores", "gil_enabled", "interpreter_label", "describe", "IdleCheck",
           "wait_for_idle_cpus", "memory_bytes", "check_memory", "LoadSampler", "LoadSample"]


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


# ---- memory -------------------------------------------------------------------------

def _cgroup_memory_limit() -> int | None:
    """Bytes allowed by a cgroup v2 memory limit (``memory.max``), or None when unlimited."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
    except OSError:
        return None
    return None if text == "max" or not text.isdigit() else int(text)


def memory_bytes() -> int | None:
    """The memory this process may use at most: the machine's physical memory, capped by a
    cgroup memory limit; None when neither can be read."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        physical = None
    limit = _cgroup_memory_limit()
    known = [n for n in (physical, limit) if n]
    return min(known) if known else None


def _bytes_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(owner: str, what: str, nbytes: int) -> int:
    """Return ``nbytes`` if that much memory can exist on this machine (memory_bytes()), else
    raise ValueError saying what needed it and how much: a size that cannot be allocated is
    refused before any work starts, instead of a MemoryError minutes later.

    >>> check_memory("mandelbrot", "an image", 2**80)
    Traceback (most recent call last):
    ...
    ValueError: mandelbrot: an image needs 1,099,511,627,776.0 TiB of memory; this machine has ...
    """
    available = memory_bytes()
    if available is not None and nbytes > available:
        raise ValueError(f"{owner}: {what} needs {_bytes_text(nbytes)} of memory; this machine "
                         f"has {_bytes_text(available)}")
    return nbytes


# ---- load during a timed run --------------------------------------------------------

# CPU time is counted in clock ticks in /proc.
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _children_of(pid: int) -> list[int]:
    """The live children of ``pid``, from each of its threads' ``children`` file."""
    children = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return children


def _process_cpu_s(pid: int) -> float:
    """Seconds of CPU ``pid`` and its reaped children used (utime, stime, cutime, cstime of
    /proc/PID/stat); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return sum(int(v) for v in fields[11:15]) * _TICK_S


def _own_cpu_s() -> float:
    """CPU seconds used so far by this process (all threads), its reaped children, and its
    live descendants. Our own figures come from getrusage (microseconds); live descendants
    from /proc (clock ticks)."""
    own = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    total = sum(u.ru_utime + u.ru_stime for u in own)
    pending = _children_of(os.getpid())
    seen = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _process_cpu_s(pid)
        pending.extend(_children_of(pid))
    return total


@dataclass(frozen=True)
class LoadSample:
    """CPU used while one timed run went on, in cores (CPU seconds per second of wall
    time): ``machine_cores`` by everything (/proc/stat), ``own_cores`` by this process and
    its descendants, ``outside_cores`` the difference: other processes' load, which slows
    the run. None where /proc cannot be read."""

    seconds: float
    machine_cores: float | None
    own_cores: float | None

    @property
    def outside_cores(self) -> float | None:
        if self.machine_cores is None or self.own_cores is None:
            return None
        return max(0.0, self.machine_cores - self.own_cores)


class LoadSampler:
    """Measures other processes' CPU use over an interval: ``start()``, then ``stop()``
    returns a LoadSample for the time between. Cheap enough to wrap every timed repeat
    (a few /proc reads per process of ours); never raises: where /proc cannot be read the
    sample says None."""

    def __init__(self):
        self._start = None

    def start(self) -> None:
        self._start = (time.perf_counter(), _cpu_times(), _own_cpu_s())

    def stop(self) -> LoadSample:
        assert self._start is not None, "start() first"
        wall0, machine0, own0 = self._start
        wall1, machine1, own1 = time.perf_counter(), _cpu_times(), _own_cpu_s()
        seconds = wall1 - wall0
        if seconds <= 0:
            return LoadSample(seconds, None, None)
        machine_cores = None
        if machine0 is not None and machine1 is not None and machine1[1] > machine0[1]:
            # /proc/stat sums every CPU; its total ticks over the interval are the CPUs
            # times the interval, so the busy fraction times the CPUs is cores in use.
            cpus = _proc_stat_cpus()
            machine_cores = cpus * (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])
        return LoadSample(seconds, machine_cores, (own1 - own0) / seconds)


def _proc_stat_cpus() -> int:
    try:
        with open("/proc/stat") as f:
            return sum(1 for line in f if line.startswith("cpu") and line[3].isdigit()) or 1
    except OSError:
        return os.cpu_count() or 1
