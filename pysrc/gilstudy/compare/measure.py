"""How one timed repeat of a model is measured, for every model alike (compare and breakeven
call this, never a model): the workload is run pass after pass on the started workers until
the repeat lasts --min-time, other processes' CPU use is sampled meanwhile, and a repeat
they disturbed is run again, a bounded number of times. Also a model's per-item dispatch cost.
"""

import math
from dataclasses import dataclass
from typing import Callable

from gilstudy import _checks, machine
from gilstudy.compare.workload import Work
from gilstudy.timing import Passes, repeat_for

__all__ = ["Timing", "Repeat", "measure_repeat", "dispatch_cost", "DEFAULT_MIN_TIME_S",
           "DEFAULT_MAX_OUTSIDE_CORES", "DEFAULT_RERUNS", "PROBE_ITEMS"]

# A repeat shorter than this is mostly timer, scheduler and wake-up noise on a shared
# machine (a compiled count_primes pass of the default compare takes about 25 ms).
DEFAULT_MIN_TIME_S = 0.3
# Other processes using more than this many cores, on average over a repeat, disturbed it:
# on 2 cores half a core taken can slow a 2-worker run by a quarter. It is also above the
# error of the sampling itself (CPU time in /proc is counted in 10 ms ticks).
DEFAULT_MAX_OUTSIDE_CORES = 0.5
# How many times a disturbed repeat is run again before the least disturbed try is kept.
DEFAULT_RERUNS = 2
# Probe items per pass when measuring the dispatch cost: enough that a pass's fixed costs
# (waking the workers, the last result's trip back) are spread thin.
PROBE_ITEMS = 256
# The probe passes of one model add up to at least this long.
_PROBE_MIN_TIME_S = 0.1


@dataclass(frozen=True)
class Timing:
    """How every timed repeat is measured: passes until ``min_time_s``, disturbed when
    other processes used more than ``max_outside_cores`` cores meanwhile, and then run
    again up to ``reruns`` times. Checks its numbers: ValueError or TypeError naming the
    argument."""

    min_time_s: float = DEFAULT_MIN_TIME_S
    max_outside_cores: float = DEFAULT_MAX_OUTSIDE_CORES
    reruns: int = DEFAULT_RERUNS

    def __post_init__(self):
        for name in ("min_time_s", "max_outside_cores"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"compare: {name} must be a number, got "
                                f"{type(value).__name__} ({value!r})")
        if not 0 <= self.min_time_s < math.inf:
            raise ValueError(f"compare: min_time_s must be a finite number of seconds >= 0, "
                             f"got {self.min_time_s!r}")
        if not self.max_outside_cores > 0:
            raise ValueError(f"compare: max_outside_cores must be > 0 (inf: never run a "
                             f"repeat again), got {self.max_outside_cores!r}")
        _checks.integer("compare", "reruns", self.reruns, minimum=0, maximum=None)

    def to_dict(self) -> dict:
        return {"min_time_s": self.min_time_s,
                "max_outside_cores": (None if math.isinf(self.max_outside_cores)
                                      else self.max_outside_cores),
                "reruns": self.reruns}

    @classmethod
    def from_dict(cls, data: dict) -> "Timing":
        limit = data["max_outside_cores"]
        return cls(data["min_time_s"], math.inf if limit is None else limit, data["reruns"])


@dataclass
class Repeat(Passes):
    """One timed repeat: the seconds of each pass over the whole workload (``per_pass_s``
    is the figure the medians are taken of), and the cores other processes used meanwhile
    (None where /proc could not be read). ``tries`` counts the runs of this repeat (1 when
    it was not disturbed); ``disturbed`` says that even the kept try was."""

    outside_cores: float | None = None
    tries: int = 1
    disturbed: bool = False

    def to_dict(self) -> dict:
        return {"pass_s": list(self.pass_s), "outside_cores": self.outside_cores,
                "tries": self.tries, "disturbed": self.disturbed}

    @classmethod
    def from_dict(cls, data: dict) -> "Repeat":
        return cls(list(data["pass_s"]), data["outside_cores"], data["tries"], data["disturbed"])


def _is_disturbed(outside_cores: float | None, timing: Timing) -> bool:
    return outside_cores is not None and outside_cores > timing.max_outside_cores


def measure_repeat(run_once: Callable[[], object], check: Callable[[object], None],
                   timing: Timing) -> tuple[Repeat, list[Repeat]]:
    """Time one repeat: ``run_once()`` (one pass over the whole workload) back to back
    until the passes add up to ``timing.min_time_s``, each result given to ``check``
    (outside the timed calls) as it comes. If other processes used more than
    ``timing.max_outside_cores`` meanwhile, the repeat is run again, up to
    ``timing.reruns`` times; the first undisturbed try is kept, or if none was, the least
    disturbed (marked ``disturbed``).

    Returns (the kept try, the tries set aside). Whatever ``run_once`` or ``check`` raises
    propagates at once.
    """
    tries: list[Repeat] = []
    for _ in range(1 + timing.reruns):
        sampler = machine.LoadSampler()
        sampler.start()
        passes = repeat_for(run_once, timing.min_time_s, check)
        load = sampler.stop()
        tries.append(Repeat(passes.pass_s, load.outside_cores))
        if not _is_disturbed(tries[-1].outside_cores, timing):
            break
    kept = tries[-1]
    if _is_disturbed(kept.outside_cores, timing):
        kept = min(tries, key=lambda t: t.outside_cores)
        kept.disturbed = True
    kept.tries = len(tries)
    return kept, [t for t in tries if t is not kept]


def dispatch_cost(run: Callable[[Work], object], workload: Work,
                  count: int = PROBE_ITEMS) -> float:
    """Seconds a model's started workers spend per item on items that do no work:
    handing the item over, the worker's call, the result's way back. ``run`` is the
    handle's ``run`` bound to its patience; passes over ``count`` probe items repeat
    until they add up to a tenth of a second. A dispatcher that needs c seconds per item
    cannot run items of d seconds more than d / c times faster than one worker.

    Raises whatever the workers raise, and WrongAnswer if results go missing.
    """
    probe = workload.probe(count)

    def check(answer) -> None:
        assert answer == count, f"the probe pass returned {answer!r}"

    passes = repeat_for(lambda: run(probe), _PROBE_MIN_TIME_S, check)
    return min(passes.pass_s) / count
