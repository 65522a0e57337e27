"""The convoy: an I/O-like thread sleeps 1 ms and responds, in a loop, beside a thread that
runs nothing, a pure-Python kernel (holds the GIL) or a Cython one (releases it); the
latency is how late the I/O thread runs after its sleep ends, under each interpreter asked
for. The threads run in the script _workloads.py; this module summarises and reports.

A sleep rather than a socket echo: the wake-up comes from the OS timer, like a packet
arriving, but needs no third thread or process to send the packets, which would itself
wait for the GIL (or compete for the cores) and blur what is measured. The "nothing" row
shows the OS's own wake-up delay, the floor of every other row.
"""

import argparse
import math
import statistics
import textwrap
from dataclasses import dataclass, field
from typing import Callable

from gilstudy._table import format_table
from gilstudy.experiments import _experiment
from gilstudy.pythons import Python

__all__ = ["DEFAULT_SECONDS", "MAX_SECONDS", "INTERVAL_S", "LOADS", "ConvoyLoad",
           "ConvoyResult", "run", "format_report", "EXPERIMENT"]

DEFAULT_SECONDS = 1.0
# Longer than this per load is a mistake, not an experiment (and a child silent that long
# would look hung).
MAX_SECONDS = 3600.0
# How long the I/O thread sleeps before each response.
INTERVAL_S = 0.001


@dataclass(frozen=True)
class _Load:
    description: str
    # (the kernel, by its name in _workloads.LOADS, and the arguments of one call), or None:
    # the CPU thread stays idle. Each call takes about 10-15 ms on one core, so the CPU
    # thread notices the end of the measurement promptly.
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
    kernel calls the CPU thread completed meanwhile (0 for "none"). A load whose kernel does
    not import under the interpreter (the Cython one, where gilstudy is not installed) is
    not run: ``unavailable`` says why, and the figures are None.
    """

    load: str
    description: str
    responses: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    kernel_calls: int
    seconds: float
    unavailable: str | None = None


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


def _summary(measured: dict) -> ConvoyLoad:
    """The ConvoyLoad of one load as the workload measured it."""
    name, ordered = measured["load"], sorted(measured["latencies"])
    figures = (None, None, None)
    if ordered:
        figures = (statistics.median(ordered) * 1e3, _nearest_rank(ordered, 0.99) * 1e3,
                   ordered[-1] * 1e3)
    return ConvoyLoad(name, LOADS[name].description, len(ordered), *figures,
                      kernel_calls=measured["kernel_calls"], seconds=measured["seconds"],
                      unavailable=measured["unavailable"])


def _check_seconds(seconds) -> float:
    """``seconds`` as a float, or TypeError/ValueError: a number, more than 0 and at most
    MAX_SECONDS (so not inf or NaN)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"convoy.run: seconds must be a number, got {type(seconds).__name__} "
                        f"({seconds!r})")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"convoy.run: seconds must be > 0 and <= {MAX_SECONDS:g}, got {seconds}")
    return float(seconds)


def _seconds_option(text: str) -> float:
    """argparse type of --seconds: _check_seconds()'s rule, checked before anything runs."""
    try:
        return _check_seconds(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 and <= {MAX_SECONDS:g}, got "
                                         f"{text!r}") from None


def run(seconds: float = DEFAULT_SECONDS, python: str | Python | None = None,
        progress: Callable[[str], None] | None = None) -> ConvoyResult:
    """Measure the I/O thread's latency for ``seconds`` beside each CPU load in LOADS, in a
    child process of ``python`` (a path or command name of any CPython from 2.7 on, with or
    without gilstudy; a Python that gilstudy.pythons.survey() found; None: this
    interpreter). The Cython load runs only where gilstudy's extension imports.

    Raises TypeError/ValueError for a ``seconds`` that is not a number in (0, MAX_SECONDS];
    ValueError when ``python`` cannot be used (_experiment.interpreter() says which);
    PythonExecutableFailed when the child fails (_experiment.run_workload() says how).
    """
    seconds = _check_seconds(seconds)
    python = _experiment.interpreter(python)
    loads = [[name, load.call[1] if load.call else None] for name, load in LOADS.items()]
    facts, measured = _experiment.run_workload(
        "convoy", python, {"seconds": seconds, "interval_s": INTERVAL_S, "loads": loads},
        _experiment.TIMEOUT + len(LOADS) * seconds, progress)
    return ConvoyResult(seconds=seconds, interval_ms=INTERVAL_S * 1e3,
                        loads=[_summary(one) for one in measured], **ConvoyResult.facts(facts))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_report(results: list[ConvoyResult], failures: list[_experiment.Failure]) -> str:
    """One row per interpreter and CPU load, the GIL's hand-over rule of each, and a row
    for each interpreter that failed; then the loads not run and the errors."""
    rows = [("interpreter", "GIL handed over", "CPU thread runs", "responses", "p50 ms",
             "p99 ms", "max ms", "kernel calls")]
    not_run: dict[tuple[str, str], list[str]] = {}
    for result in results:
        for one in result.loads:
            if one.unavailable:
                not_run.setdefault((one.description, one.unavailable), []).append(result.version)
            rows.append((result.label, result.gil_handover, one.description,
                         str(one.responses) if not one.unavailable else "not run",
                         _ms(one.p50_ms), _ms(one.p99_ms), _ms(one.max_ms),
                         "-" if LOADS[one.load].call is None or one.unavailable
                         else str(one.kernel_calls)))
    rows += _experiment.failure_rows(failures, len(rows[0]))
    notes = [f"{description} not run under {', '.join(versions)}: gilstudy's Cython kernels do "
             f"not import there ({why})." for (description, why), versions in not_run.items()]
    notes += _experiment.failure_notes(failures)
    return "\n".join([format_table(rows, right={3, 4, 5, 6, 7})] + [""] * bool(notes) + [
        textwrap.fill(note, width=100, subsequent_indent="  ") for note in notes])


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=_seconds_option, default=DEFAULT_SECONDS,
                        help=f"measuring time per CPU load (default {DEFAULT_SECONDS:g}, at "
                             f"most {MAX_SECONDS:g})")


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
