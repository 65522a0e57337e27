# The shared-counter race: two threads update one module global without a lock, one adding 1
# and the other subtracting 1, N times each; every update that reads a stale value is lost.
# Beside it run the fixes (a Lock around each update; a per-thread tally added once at the
# end), under each interpreter asked for, so the report shows where the race really bites.
#
# Lost updates: with increments and decrements, the final value is (decrements lost) minus
# (increments lost), so |final| is only a lower bound of the updates lost. The companion
# variant where both threads add 1 counts them exactly: 2N - final.

import argparse
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from gilstudy import _checks
from gilstudy._table import format_table
from gilstudy.cli import positive_int
from gilstudy.experiments import _experiment
from gilstudy.pythons import Python
from gilstudy.timing import Samples

__all__ = ["DEFAULT_N", "VARIANTS", "RaceRun", "RaceResult", "run", "format_report",
           "EXPERIMENT"]

# About 1-2 s for one round of all four variants under the GIL on a 2020s x86 core.
DEFAULT_N = 2_000_000

# Only reached if a thread deadlocks; a run takes seconds.
TIMEOUT = 600.0

# The shared state every variant updates. Module globals on purpose: the race is about
# ``x += 1`` on a global, as in the classic demonstration.
_shared = 0
_lock = threading.Lock()


def _add(n: int) -> None:
    global _shared
    for _ in range(n):
        _shared += 1


def _subtract(n: int) -> None:
    global _shared
    for _ in range(n):
        _shared -= 1


def _add_locked(n: int) -> None:
    global _shared
    for _ in range(n):
        with _lock:
            _shared += 1


def _subtract_locked(n: int) -> None:
    global _shared
    for _ in range(n):
        with _lock:
            _shared -= 1


def _tally(sign: int) -> Callable[[int], None]:
    def count(n: int) -> None:
        global _shared
        tally = 0
        for _ in range(n):
            tally += sign
        with _lock:
            _shared += tally
    return count


@dataclass(frozen=True)
class _Variant:
    description: str
    workers: tuple[Callable[[int], None], Callable[[int], None]]
    # Expected final value, as a multiple of n.
    expected_per_n: int
    # True when |final - expected| counts the lost updates exactly (both threads add),
    # False when it is only a lower bound (lost increments and decrements cancel out).
    lost_exact: bool


VARIANTS: dict[str, _Variant] = {
    "unlocked": _Variant("x += 1 | x -= 1, no lock", (_add, _subtract), 0, False),
    "unlocked_add_add": _Variant("x += 1 | x += 1, no lock", (_add, _add), 2, True),
    "locked": _Variant("x += 1 | x -= 1, Lock around each", (_add_locked, _subtract_locked),
                       0, False),
    "tally": _Variant("local tally, added to x once under a Lock", (_tally(1), _tally(-1)),
                      0, False),
}
UNLOCKED = ("unlocked", "unlocked_add_add")


@dataclass
class RaceRun:
    """One run of one variant: the final value of the shared global and the updates lost.

    ``lost`` is ``|final - expected|``: the exact number of updates lost when
    ``lost_exact`` (both threads add), a lower bound otherwise (a lost increment and a lost
    decrement cancel out in the final value).
    """

    variant: str
    final: int
    expected: int
    lost: int
    lost_exact: bool
    seconds: float


@dataclass(kw_only=True)
class RaceResult(_experiment.Result):
    """Every run of the race under one interpreter, with the facts that label it (the
    fields of _experiment.Result)."""

    PARTS = ("runs", RaceRun)

    n: int
    repeat: int
    runs: list[RaceRun] = field(default_factory=list)

    def runs_of(self, variant: str) -> list[RaceRun]:
        return [r for r in self.runs if r.variant == variant]

    def bitten(self, variant: str) -> int:
        """How many runs of ``variant`` lost at least one update."""
        return sum(1 for r in self.runs_of(variant) if r.lost > 0)

    def race_bit(self) -> bool:
        return any(self.bitten(v) for v in UNLOCKED)

    def verdict(self) -> str:
        """One plain sentence: did the unlocked race lose updates in this run?"""
        runs = len(self.runs_of("unlocked")) + len(self.runs_of("unlocked_add_add"))
        bitten = sum(self.bitten(v) for v in UNLOCKED)
        if not bitten:
            text = (f"{self.label}: the race did not bite in this run: 0 of {runs} unlocked "
                    "runs lost an update.")
            if self.gil_enabled:
                text += (" With the GIL, CPython 3.10 and later hand the GIL over only at calls "
                         "and loop back-edges, never between the read and the write of x += 1.")
            return text
        worst = max(r.lost for v in UNLOCKED for r in self.runs_of(v))
        return (f"{self.label}: the race bit in {bitten} of {runs} unlocked runs, losing up "
                f"to {worst:,} of {2 * self.n:,} updates in one run.")


def _run_variant(name: str, n: int) -> RaceRun:
    global _shared
    variant = VARIANTS[name]
    _shared = 0
    # Both threads wait at the barrier, so they start updating together rather than the
    # first finishing before the second exists.
    barrier = threading.Barrier(2)

    def body(worker):
        barrier.wait(TIMEOUT)
        worker(n)

    threads = [threading.Thread(target=body, args=(w,), name=f"race-{name}-{i}")
               for i, w in enumerate(variant.workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        if t.is_alive():
            raise RuntimeError(f"race: thread {t.name} still running after {TIMEOUT:.0f} s")
    seconds = time.perf_counter() - start
    final = _shared
    expected = variant.expected_per_n * n
    return RaceRun(variant=name, final=final, expected=expected, lost=abs(final - expected),
                   lost_exact=variant.lost_exact, seconds=seconds)


def run(n: int = DEFAULT_N, repeat: int = 1, python: str | Python | None = None,
        progress: Callable[[str], None] | None = None) -> RaceResult:
    """Run every variant of the race ``repeat`` times with ``n`` updates per thread.

    Rounds are interleaved (each round runs every variant once). With ``python`` (a path or
    command name of an interpreter that has gilstudy installed, or a Python that
    gilstudy.pythons.probe() returned) the race runs in a child process of that interpreter
    instead of this one.

    The race updates this module's globals, so two runs must not overlap in one process
    (one at a time per process; separate processes are independent).

    Raises TypeError/ValueError for a non-int or < 1 ``n`` or ``repeat``; ValueError when
    ``python`` cannot run or import gilstudy; InterpreterFailed when the child fails
    (_experiment.run_elsewhere() says how); RuntimeError when a thread is stuck.

    >>> result = run(n=1000)
    >>> [r.lost for r in result.runs_of("locked")]
    [0]
    """
    n = _checks.positive_int("race.run", "n", n)
    repeat = _checks.positive_int("race.run", "repeat", repeat)
    if python is not None:
        return _experiment.run_elsewhere(EXPERIMENT, python, {"n": n, "repeat": repeat},
                                         progress)

    result = RaceResult(n=n, repeat=repeat)
    for round_ in range(repeat):
        for name in VARIANTS:
            one = _run_variant(name, n)
            result.runs.append(one)
            if progress:
                progress(f"{result.label} round {round_ + 1}/{repeat} {name}: final {one.final:,}, "
                         f"{one.seconds:.2f} s")
    return result


def format_report(results: list[RaceResult]) -> str:
    """The table of every variant under every interpreter, then one verdict per interpreter."""
    rows = [("interpreter", "variant", "expected", "final (each run)", "lost updates (each run)",
             "runs bitten", "median s")]
    for result in results:
        for name, variant in VARIANTS.items():
            runs = result.runs_of(name)
            lost = ", ".join(f"{r.lost:,}" if r.lost_exact or r.lost == 0 else f">={r.lost:,}"
                             for r in runs)
            rows.append((result.label, variant.description, f"{variant.expected_per_n * result.n:,}",
                         ", ".join(f"{r.final:,}" for r in runs), lost,
                         f"{result.bitten(name)} of {len(runs)}",
                         f"{Samples([r.seconds for r in runs]).median:.2f}"))
    table = format_table(rows, right={2})
    notes = ["lost updates: |final - expected|; exact when both threads add, otherwise a lower "
             "bound ('>=') since lost increments and decrements cancel out."]
    return "\n".join([table, ""] + [textwrap.fill(text, width=100, subsequent_indent="  ")
                                    for text in [*notes, *(r.verdict() for r in results)]])


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=positive_int, default=DEFAULT_N,
                        help=f"updates per thread (default {DEFAULT_N:,})")
    parser.add_argument("--repeat", type=positive_int, default=1,
                        help="runs of each variant (default 1)")


EXPERIMENT = _experiment.Experiment(
    name="race", help="the shared-counter race, with and without the GIL",
    description="Two threads update one module global N times each without a lock (one adds "
                "1, the other subtracts 1), then with a Lock and with a per-thread tally; "
                "reports the final values and the updates lost under each interpreter.",
    add_options=_add_options, options=("n", "repeat"), run=run, result_type=RaceResult,
    header=lambda n, repeat: (f"gilstudy experiment race: two threads, {n:,} updates each on "
                              f"one module global, {repeat} run(s) of each variant"),
    report=format_report)


if __name__ == "__main__":
    raise SystemExit(_experiment.module_main(EXPERIMENT))
