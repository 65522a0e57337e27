"""The shared-counter race: two threads update one module global N times each without a lock
(one adds 1, the other subtracts 1), beside the fixes (a Lock around each update; a tally
per thread, added once), under each interpreter asked for. The threads run in the script
_workloads.py; this module says what the runs mean and reports them.
"""

import argparse
import textwrap
from dataclasses import dataclass, field
from typing import Callable

from gilstudy import _checks
from gilstudy._table import format_table
from gilstudy.cli import positive_int
from gilstudy.experiments import _experiment
from gilstudy.pythons import Python
from gilstudy.timing import Samples

__all__ = ["DEFAULT_N", "MAX_N", "VARIANTS", "RaceRun", "RaceResult", "run", "format_report",
           "EXPERIMENT"]

# About 1-2 s for one round of all four variants under the GIL on a 2020s x86 core.
DEFAULT_N = 2_000_000
# More updates than this make one variant run for minutes: a mistake, not an experiment.
MAX_N = 100_000_000
# A generous bound on the seconds one update takes under any interpreter (30 ns to 1 us,
# the locked ones under contention the slowest), for the deadline of a child that hangs.
_UPDATE_BOUND_S = 1e-5


# The variants, by the names _workloads.RACE_VARIANTS runs them under, with what they mean.
# With increments and decrements, the final value is (decrements lost) minus (increments
# lost), so |final| is only a lower bound of the updates lost; where both threads add 1 it
# counts them exactly: 2N - final.
@dataclass(frozen=True)
class _Variant:
    description: str
    # Expected final value, as a multiple of n.
    expected_per_n: int
    # True when |final - expected| counts the lost updates exactly (both threads add),
    # False when it is only a lower bound (lost increments and decrements cancel out).
    lost_exact: bool


VARIANTS: dict[str, _Variant] = {
    "unlocked": _Variant("x += 1 | x -= 1, no lock", 0, False),
    "unlocked_add_add": _Variant("x += 1 | x += 1, no lock", 2, True),
    "locked": _Variant("x += 1 | x -= 1, Lock around each", 0, False),
    "tally": _Variant("local tally, added to x once under a Lock", 0, False),
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
        """Plain sentences: did the unlocked race lose updates in this run, and why (or why
        not) under this interpreter?"""
        runs = len(self.runs_of("unlocked")) + len(self.runs_of("unlocked_add_add"))
        bitten = sum(self.bitten(v) for v in UNLOCKED)
        if bitten:
            worst = max(r.lost for v in UNLOCKED for r in self.runs_of(v))
            text = (f"{self.label}: the race bit in {bitten} of {runs} unlocked runs, losing "
                    f"up to {worst:,} of {2 * self.n:,} updates in one run.")
        else:
            text = (f"{self.label}: the race did not bite in this run: 0 of {runs} unlocked "
                    "runs lost an update.")
        return f"{text} {self._why()}"

    def _why(self) -> str:
        if not self.gil_enabled:
            return "Without the GIL nothing keeps the two threads from updating x at once."
        if tuple(map(int, self.version.split(".")[:2])) >= (3, 10):
            return ("With the GIL, CPython 3.10 and later hand the GIL over only at calls and "
                    "loop back-edges, never between the read and the write of x += 1.")
        return (f"With the GIL, CPython before 3.10 may hand it over between any two "
                f"bytecodes ({self.gil_handover}), so also between the read and the write of "
                "x += 1.")


def run(n: int = DEFAULT_N, repeat: int = 1, python: str | Python | None = None,
        progress: Callable[[str], None] | None = None) -> RaceResult:
    """Run every variant of the race ``repeat`` times with ``n`` updates per thread, in a
    child process of ``python`` (a path or command name of any CPython from 2.7 on, with or
    without gilstudy; a Python that gilstudy.pythons.survey() found; None: this interpreter).
    Rounds are interleaved: each round runs every variant once.

    Raises TypeError/ValueError for a non-int ``n`` or ``repeat``, one < 1, or an ``n``
    over MAX_N; ValueError when ``python`` cannot be used (_experiment.interpreter() says
    which); PythonExecutableFailed when the child fails (_experiment.run_workload() says how).

    >>> result = run(n=1000)
    >>> [r.lost for r in result.runs_of("locked")]
    [0]
    """
    n = _checks.positive_int("race.run", "n", n)
    if n > MAX_N:
        raise ValueError(f"race.run: n must be <= {MAX_N:,}, got {n:,}")
    repeat = _checks.positive_int("race.run", "repeat", repeat)
    python = _experiment.interpreter(python)
    deadline = _experiment.TIMEOUT + repeat * len(VARIANTS) * 2 * n * _UPDATE_BOUND_S
    facts, runs = _experiment.run_workload(
        "race", python, {"n": n, "repeat": repeat, "variants": list(VARIANTS)}, deadline,
        progress)
    result = RaceResult(n=n, repeat=repeat, **RaceResult.facts(facts))
    for one in runs:
        variant = VARIANTS[one["variant"]]
        expected = variant.expected_per_n * n
        result.runs.append(RaceRun(variant=one["variant"], final=one["final"],
                                   expected=expected, lost=abs(one["final"] - expected),
                                   lost_exact=variant.lost_exact, seconds=one["seconds"]))
    return result


def format_report(results: list[RaceResult], failures: list[_experiment.Failure]) -> str:
    """The table of every variant under every interpreter and a row for each that failed,
    then one verdict per interpreter and the errors."""
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
    rows += _experiment.failure_rows(failures, len(rows[0]))
    table = format_table(rows, right={2})
    notes = ["lost updates: |final - expected|; exact when both threads add, otherwise a lower "
             "bound ('>=') since lost increments and decrements cancel out."]
    return "\n".join([table, ""] + [textwrap.fill(text, width=100, subsequent_indent="  ")
                                    for text in [*notes, *(r.verdict() for r in results),
                                                 *_experiment.failure_notes(failures)]])


def _n_option(text: str) -> int:
    """argparse type of --n: an integer from 1 to MAX_N."""
    n = positive_int(text)
    if n > MAX_N:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_N:,}, got {n:,}")
    return n


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=_n_option, default=DEFAULT_N,
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
