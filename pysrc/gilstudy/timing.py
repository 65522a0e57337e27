# Timing that survives a noisy, shared machine: candidates are run interleaved (A, B, A, B,
# ...) so a burst of outside load hits all of them alike, and the median of the repeats is
# the figure, because one slow outlier moves a mean but not a median.

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from gilstudy import _checks

__all__ = ["Samples", "time_call", "interleaved"]


@dataclass
class Samples:
    """Seconds of repeated runs of one thing: the one place their median and spread are
    computed (gilstudy kernels, gilstudy compare's rows, the experiments)."""

    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median run; StatisticsError when there is none."""
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the repeats disagree, as a fraction."""
        if not self.seconds or self.median == 0:
            return 0.0
        return (max(self.seconds) - min(self.seconds)) / self.median


def time_call(func: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of ``func()`` took, and what it returned."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def interleaved(candidates: dict[str, Callable[[], object]], repeat: int,
                on_sample: Callable[[str, float, object], None] | None = None) -> dict[str, Samples]:
    """Run every candidate once per round for ``repeat`` rounds; return their samples.

    ``on_sample(name, seconds, result)`` is called after each run (for progress, and to
    check each result). Raises TypeError or ValueError unless ``repeat`` is an int >= 1.
    """
    _checks.positive_int("interleaved", "repeat", repeat)
    samples = {name: Samples() for name in candidates}
    for _ in range(repeat):
        for name, func in candidates.items():
            seconds, result = time_call(func)
            samples[name].seconds.append(seconds)
            if on_sample is not None:
                on_sample(name, seconds, result)
    return samples
