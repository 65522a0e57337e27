# The convoy: an I/O-like thread that must respond promptly, beside a CPU-bound thread.
# With the GIL, every time the I/O thread wakes up it has to get the GIL back from the CPU
# thread; this measures how long that takes while the CPU thread runs nothing, a pure-Python
# kernel (holds the GIL) or a Cython kernel (releases it), under each interpreter asked for.
#
# The I/O thread sleeps 1 ms and then responds, in a loop; its response latency is how late
# it runs after the sleep ended. A sleep rather than a socket echo: the wake-up comes from
# the OS timer, like a packet arriving, but needs no third thread or process to send the
# packets, which would itself wait for the GIL (or compete for the cores) and blur what is
# measured. The "nothing" row shows the OS's own wake-up delay, the floor of every other row.

import argparse
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from gilstudy import kernels
from gilstudy._table import format_table
from gilstudy.cli import positive_float
from gilstudy.experiments import _experiment
from gilstudy.pythons import Python

__all__ = ["DEFAULT_SECONDS", "INTERVAL_S", "LOADS", "ConvoyLoad", "ConvoyResult", "run",
           "format_report", "EXPERIMENT"]

DEFAULT_SECONDS = 1.0
# How long the I/O thread sleeps before each response.
INTERVAL_S = 0.001
# Only reached if a thread hangs.
TIMEOUT = 600.0


@dataclass(frozen=True)
class _Load:
    description: str
    # (kernel implementation, arguments of one call), or None: the CPU thread stays idle.
    # Each call takes about 10-15 ms on one core, so the CPU thread notices the end of the
    # measurement promptly.
    call: tuple[str, tuple] | None


LOADS: dict[str, _Load] = {
    "none": _Load("nothing", None),
    "python": _Load("pure-Python count_primes", ("python", (0, 20_000))),
    "cython": _Load("Cython count_primes (nogil)", ("cython", (0, 200_000))),
}


@dataclass
class ConvoyLoad:
    """The I/O thread's response latencies while the CPU thread ran one load.

    ``p50_ms`` is the median (the typical response), ``p99_ms`` the 99th percentile by
    nearest rank (the tail a user notices), ``max_ms`` the worst single response. A mean
    is left out on purpose: a few long waits would dominate it. ``kernel_calls`` is how many
    kernel calls the CPU thread completed meanwhile (0 for "none").
    """

    load: str
    description: str
    responses: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    kernel_calls: int
    seconds: float


@dataclass(kw_only=True)
class ConvoyResult(_experiment.Result):
    """The convoy under one interpreter: one ConvoyLoad per CPU load, with the facts that
    label it (the fields of _experiment.Result)."""

    PARTS = ("loads", ConvoyLoad)

    seconds: float
    interval_ms: float
    loads: list[ConvoyLoad] = field(default_factory=list)

    def load(self, name: str) -> ConvoyLoad:
        for one in self.loads:
            if one.load == name:
                return one
        raise KeyError(f"no load {name!r} in this result; it has {[l.load for l in self.loads]}")


def _nearest_rank(ordered: list[float], fraction: float) -> float:
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _measure(name: str, seconds: float) -> ConvoyLoad:
    load = LOADS[name]
    kernel = args = None
    if load.call is not None:
        impl, args = load.call
        kernel = kernels.get("count_primes", impl)
    stop = threading.Event()
    cpu_running = threading.Event()
    calls = 0
    latencies: list[float] = []

    def cpu() -> None:
        nonlocal calls
        cpu_running.set()
        if kernel is None:
            stop.wait(TIMEOUT)
            return
        while not stop.is_set():
            kernel(*args)
            calls += 1

    def io() -> None:
        cpu_running.wait(TIMEOUT)
        end = time.perf_counter() + seconds
        while True:
            due = time.perf_counter() + INTERVAL_S
            time.sleep(INTERVAL_S)
            # Running this line at all needs the interpreter (the GIL, where there is one):
            # the latency is the time between the wake-up being due and the thread running.
            now = time.perf_counter()
            latencies.append(now - due)
            if now >= end:
                break
        stop.set()

    threads = [threading.Thread(target=cpu, name=f"convoy-cpu-{name}"),
               threading.Thread(target=io, name=f"convoy-io-{name}")]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        if t.is_alive():
            stop.set()
            raise RuntimeError(f"convoy: thread {t.name} still running after {TIMEOUT:.0f} s")
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return ConvoyLoad(load=name, description=load.description, responses=len(ordered),
                      p50_ms=statistics.median(ordered) * 1e3,
                      p99_ms=_nearest_rank(ordered, 0.99) * 1e3, max_ms=ordered[-1] * 1e3,
                      kernel_calls=calls, seconds=elapsed)


def _check_seconds(seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"convoy.run: seconds must be a number, got {type(seconds).__name__} "
                        f"({seconds!r})")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"convoy.run: seconds must be > 0 and finite, got {seconds}")
    return float(seconds)


def run(seconds: float = DEFAULT_SECONDS, python: str | Python | None = None,
        progress: Callable[[str], None] | None = None) -> ConvoyResult:
    """Measure the I/O thread's latency for ``seconds`` beside each CPU load in LOADS.

    With ``python`` (a path or command name of an interpreter that has gilstudy installed,
    or a Python that gilstudy.pythons.probe() returned) the experiment runs in a child
    process of that interpreter instead of this one.

    Raises TypeError/ValueError for a ``seconds`` that is not a positive finite number;
    ValueError when ``python`` cannot run or import gilstudy; InterpreterFailed when the
    child fails (_experiment.run_elsewhere() says how); RuntimeError when a thread is stuck.
    """
    seconds = _check_seconds(seconds)
    if python is not None:
        return _experiment.run_elsewhere(EXPERIMENT, python, {"seconds": seconds}, progress)

    result = ConvoyResult(seconds=seconds, interval_ms=INTERVAL_S * 1e3)
    for name in LOADS:
        one = _measure(name, seconds)
        result.loads.append(one)
        if progress:
            progress(f"{result.label} {name}: {one.responses} responses, p50 "
                     f"{one.p50_ms:.3f} ms, p99 {one.p99_ms:.3f} ms")
    return result


def format_report(results: list[ConvoyResult]) -> str:
    """One row per interpreter and CPU load."""
    rows = [("interpreter", "CPU thread runs", "responses", "p50 ms", "p99 ms", "max ms",
             "kernel calls")]
    for result in results:
        for one in result.loads:
            rows.append((result.label, one.description, str(one.responses), f"{one.p50_ms:.3f}",
                         f"{one.p99_ms:.3f}", f"{one.max_ms:.3f}",
                         "-" if LOADS[one.load].call is None else str(one.kernel_calls)))
    return format_table(rows, right={2, 3, 4, 5, 6})


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=positive_float, default=DEFAULT_SECONDS,
                        help=f"measuring time per CPU load (default {DEFAULT_SECONDS:g})")


EXPERIMENT = _experiment.Experiment(
    name="convoy", help="an I/O thread's latency beside a CPU-bound thread",
    description="An I/O-like thread sleeps 1 ms and responds, in a loop, while a second thread "
                "runs nothing, a pure-Python kernel or a Cython kernel that releases the GIL; "
                "reports how late the I/O thread responds (median and 99th percentile) under "
                "each interpreter.",
    add_options=_add_options, options=("seconds",), run=run, result_type=ConvoyResult,
    header=lambda seconds: (f"gilstudy experiment convoy: an I/O thread sleeps "
                            f"{INTERVAL_S * 1e3:g} ms and responds, for {seconds:g} s beside "
                            "each CPU load; latency = how late it ran"),
    report=format_report)


if __name__ == "__main__":
    raise SystemExit(_experiment.module_main(EXPERIMENT))
