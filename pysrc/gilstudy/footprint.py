"""What a worker costs before it does any work: the start-up time and the memory of N workers of
each kind (thread, subinterpreter, coprocess), each kind measured in a fresh Python process
of its own so that one kind's memory never hides in another's. For the compare report's
start-up and memory table, and `python -m gilstudy.footprint`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from gilstudy import _checks

__all__ = ["KINDS", "Footprint", "measure", "footprint", "format_footprints", "main"]

KINDS = ("thread", "subinterpreter", "coprocess")

# Only reached when a worker hangs while starting.
_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Footprint:
    """What ``workers`` workers of ``kind`` cost, each running a KernelConsumer of ``kernel``
    in ``impl``: ``startup_s`` from the first start to every worker having answered a first
    item (the start-up gilstudy compare times), and the memory they added, per worker, as
    resident set size (``rss_bytes``: every page a worker touched, shared libraries counted
    again in each process) and proportional set size (``pss_bytes``: shared pages split
    among the processes sharing them), both None where /proc has no smaps_rollup.
    ``unavailable`` says why the kind cannot run under this Python (then the figures are
    None); ``python`` is the interpreter, as '3.15'."""

    kind: str
    workers: int
    python: str
    startup_s: float | None = None
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    unavailable: str | None = None

    @property
    def startup_per_worker_s(self) -> float | None:
        return None if self.startup_s is None else self.startup_s / self.workers


def _memory(pid: int | str = "self") -> tuple[int, int] | None:
    """(Rss, Pss) of process ``pid`` in bytes, from /proc/PID/smaps_rollup (Linux 4.14+);
    None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        return None
    fields = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            fields[name] = int(rest.split()[0]) * 1024
    if len(fields) != 2:
        return None
    return fields["Rss"], fields["Pss"]


def _starter(kind: str, kernel: str, impl: str, results):
    """start_one(index) for start_runners: one worker of ``kind`` running the kernel."""
    from gilstudy.consumers import ConsumerThread
    from gilstudy.interpreters import subinterpreter
    from gilstudy.kernels.work import KernelConsumer
    from gilstudy.processes import spawn

    if kind == "thread":
        return lambda index: ConsumerThread(KernelConsumer(kernel, impl), results=results)
    if kind == "subinterpreter":
        return lambda index: subinterpreter(KernelConsumer, kernel, impl, results=results)
    return lambda index: spawn(KernelConsumer, kernel, impl, results=results)


def measure(kind: str, workers: int = 2, kernel: str = "count_primes",
            impl: str = "python") -> Footprint:
    """Start ``workers`` workers of ``kind`` in this process, each running KernelConsumer(
    ``kernel``, ``impl``); time them until each has answered one small item; take the memory
    they added (this process's growth plus the worker processes'), per worker; close them.

    Call it in a fresh process (footprint() does): the modules this process has loaded
    already are not counted again for threads, and an allocator's leftovers from earlier
    work would blur the figures. A kind that this Python cannot run (a subinterpreter
    before 3.14) gives a Footprint with ``unavailable`` set. Raises ValueError for an
    unknown kind, and what starting the workers raises (their error, WorkerDied).
    """
    from gilstudy.consumers import Collect
    from gilstudy.dispatch import start_runners
    from gilstudy.interpreters import unavailable_reason
    from gilstudy.kernels.work import KernelConsumer
    from gilstudy.machine import interpreter_label

    if kind not in KINDS:
        raise ValueError(f"measure: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _checks.positive_int("measure", "workers", workers)
    python = interpreter_label()
    if kind == "subinterpreter" and unavailable_reason() is not None:
        return Footprint(kind, workers, python, unavailable=unavailable_reason())
    # What the caller of any model has loaded already: the kernel and the runners.
    KernelConsumer(kernel, impl)
    probe_args = {"countdown": (1000,), "count_primes": (0, 1000),
                  "mandelbrot": (8, 8, 10)}[kernel]
    results = Collect()
    before = _memory()
    start = time.perf_counter()
    fan = start_runners(_starter(kind, kernel, impl, results), workers, owner="measure")
    try:
        for index, runner in enumerate(fan.consumers):
            runner.send((index, probe_args))
        answered = results.take(workers, timeout=_START_TIMEOUT_S)
        startup_s = time.perf_counter() - start
        after = _memory()
        for runner in fan.consumers:
            pid = getattr(runner, "pid", None)
            added = _memory(pid) if pid is not None and pid != os.getpid() else (0, 0)
            after = None if after is None or added is None else (after[0] + added[0],
                                                                 after[1] + added[1])
    except BaseException:
        fan.abort()
        raise
    fan.close()
    if sorted(index for index, _ in answered) != list(range(workers)):
        raise AssertionError(f"measure: {kind} workers answered {answered!r}")
    if before is None or after is None:
        return Footprint(kind, workers, python, startup_s)
    return Footprint(kind, workers, python, startup_s,
                     rss_bytes=max(0, after[0] - before[0]) // workers,
                     pss_bytes=max(0, after[1] - before[1]) // workers)


def footprint(kinds=KINDS, workers: int = 2, python: str | None = None,
              kernel: str = "count_primes", impl: str = "python") -> list[Footprint]:
    """measure() each of ``kinds`` in a fresh process of ``python`` (this interpreter by
    default; it needs gilstudy installed), one after the other; return their Footprints.

    Raises ValueError for an unknown kind and PythonExecutableFailed (with the child's last
    words) when a measuring process fails.
    """
    from gilstudy.errors import PythonExecutableFailed

    _checks.positive_int("footprint", "workers", workers)
    kinds = tuple(kinds)
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"footprint: each kind must be one of {', '.join(KINDS)}, "
                             f"got {kind!r}")
    python = python or sys.executable
    found = []
    for kind in kinds:
        done = subprocess.run([python, "-m", "gilstudy.footprint", "--measure", kind,
                               "--workers", str(workers), "--kernel", kernel, "--impl", impl],
                              capture_output=True, text=True, timeout=_START_TIMEOUT_S * 2)
        if done.returncode != 0:
            last_words = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
            raise PythonExecutableFailed(f"{python}: measuring {kind} workers failed with exit "
                                    f"status {done.returncode}: {last_words}", subject=python)
        found.append(Footprint(**json.loads(done.stdout)))
    return found


def format_footprints(footprints: list[Footprint]) -> str:
    """The start-up and memory table: one row per kind."""
    from gilstudy._table import format_table

    def mib(value: int | None) -> str:
        return "-" if value is None else f"{value / (1 << 20):.1f}"

    rows = [("kind", "python", "workers", "start-up s", "per worker s", "RSS MiB/worker",
             "PSS MiB/worker", "note")]
    for item in footprints:
        if item.unavailable:
            rows.append((item.kind, item.python, str(item.workers), "-", "-", "-", "-",
                         item.unavailable))
            continue
        rows.append((item.kind, item.python, str(item.workers), f"{item.startup_s:.3f}",
                     f"{item.startup_per_worker_s:.3f}", mib(item.rss_bytes),
                     mib(item.pss_bytes), ""))
    return format_table(rows, right={2, 3, 4, 5, 6})


def main(argv: list[str] | None = None) -> int:
    """``python -m gilstudy.footprint``: the table for every kind, each measured in a fresh
    process; ``--measure KIND`` measures one kind in this process and prints its JSON."""
    parser = argparse.ArgumentParser(prog="python -m gilstudy.footprint",
                                     description="Start-up time and memory per worker of "
                                     "threads, subinterpreters and coprocesses.")
    parser.add_argument("--measure", choices=KINDS, help="measure this kind here, print JSON")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kernel", default="count_primes")
    parser.add_argument("--impl", default="python")
    parser.add_argument("--python", help="measure under this interpreter (default: this one)")
    args = parser.parse_args(argv)
    try:
        if args.measure:
            print(json.dumps(asdict(measure(args.measure, args.workers, args.kernel,
                                            args.impl))))
        else:
            print(format_footprints(footprint(KINDS, args.workers, args.python, args.kernel,
                                              args.impl)))
    except (TypeError, ValueError, LookupError) as exc:
        parser.exit(2, f"python -m gilstudy.footprint: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
