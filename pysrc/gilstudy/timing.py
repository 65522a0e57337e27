"""Timing that survives a noisy, shared machine: candidates are run interleaved (A, B, A, B,
...) so a burst of outside load hits all of them alike, the median of the repeats is the
figure, because one slow outlier moves a mean but not a median, and a sample too short for
the timer to be trusted is made long enough by repeating the work (repeat_for).
"""

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from gilstudy import _checks

__all__ = ["Samples", "time_call", "interleaved", "Passes", "repeat_for"]


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


@dataclass
class Passes:
    """One timed sample made of ``len(pass_s)`` back-to-back passes of the same work:
    the seconds of each pass, their sum, and the time per pass (the figure reported)."""

    pass_s: list[float] = field(default_factory=list)

    @property
    def passes(self) -> int:
        return len(self.pass_s)

    @property
    def seconds(self) -> float:
        return sum(self.pass_s)

    @property
    def per_pass_s(self) -> float:
        return self.seconds / self.passes


def repeat_for(func: Callable[[], object], min_time_s: float,
               on_pass: Callable[[object], None] | None = None) -> Passes:
    """Call ``func()`` at least once, and again until the calls add up to ``min_time_s``
    seconds; return the seconds of each call (pytest-benchmark's calibration, on one
    sample: a run of 25 ms is mostly timer and scheduler noise, twelve of them are not).

    ``on_pass(result)`` checks each call's result outside the timed calls; whatever it
    raises, or ``func`` raises, propagates at once. Raises ValueError unless
    ``min_time_s`` is a finite number >= 0.
    """
    if isinstance(min_time_s, bool) or not isinstance(min_time_s, (int, float)) \
            or not 0 <= min_time_s < float("inf"):
        raise ValueError(f"repeat_for: min_time_s must be a finite number of seconds >= 0, "
                         f"got {min_time_s!r}")
    passes = Passes()
    while not passes.pass_s or passes.seconds < min_time_s:
        seconds, result = time_call(func)
        passes.pass_s.append(seconds)
        if on_pass is not None:
            on_pass(result)
    return passes
