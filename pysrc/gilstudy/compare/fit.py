"""Scaling laws fitted to measured speedups, to project what more cores would give: Amdahl's
law (a serial fraction s) and the Universal Scalability Law (contention a, coherency b,
which also lets speedup fall when workers are added). Both are fitted by least squares
with numpy, parameters kept >= 0. A projection is a fit, never a measurement.
"""

import itertools
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["ScalingFit", "fit_amdahl", "fit_usl", "amdahl_speedup", "usl_speedup",
           "PROJECT_AT"]

# Core counts a report projects speedups to.
PROJECT_AT = (4, 16, 64)


def amdahl_speedup(n: float, s: float) -> float:
    """Amdahl's law: S(N) = 1 / (s + (1 - s) / N) for serial fraction ``s``."""
    return 1.0 / (s + (1.0 - s) / n)


def usl_speedup(n: float, a: float, b: float) -> float:
    """Universal Scalability Law: S(N) = N / (1 + a (N - 1) + b N (N - 1))."""
    return n / (1.0 + a * (n - 1) + b * n * (n - 1))


@dataclass(frozen=True)
class ScalingFit:
    """A scaling law fitted to ``points``, (workers, speedup over 1 worker) pairs.

    ``params`` holds the fitted parameters (``s`` for Amdahl, ``a`` and ``b`` for USL) and
    ``rms_error`` the root mean square difference between fitted and measured speedups.
    """

    law: str
    points: tuple[tuple[int, float], ...]
    params: dict[str, float]
    rms_error: float

    def speedup(self, n: float) -> float:
        """The fitted law's speedup at ``n`` workers: a projection past the points."""
        if self.law == "amdahl":
            return amdahl_speedup(n, self.params["s"])
        return usl_speedup(n, self.params["a"], self.params["b"])

    def describe_params(self) -> str:
        return ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())


def _clean(points: Iterable[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    cleaned = []
    for n, speedup in points:
        if n < 1 or not speedup > 0:
            raise ValueError(f"a scaling point needs workers >= 1 and speedup > 0, got ({n}, {speedup})")
        cleaned.append((int(n), float(speedup)))
    return tuple(sorted(cleaned))


def _design(points, columns):
    # Both laws are linear in their parameters once written as 1/S(N) - 1/N (the time at N
    # workers over the time at 1, less the ideal 1/N), so ordinary least squares on that
    # form fits them; residuals are then in units of the 1-worker time at every N.
    n = np.array([p[0] for p in points], dtype=float)
    y = 1.0 / np.array([p[1] for p in points]) - 1.0 / n
    return np.column_stack([f(n) for f in columns]), y


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0. With two or three columns, solving each
    subset of columns unconstrained and keeping the best solution without a negative
    coefficient is exact (the constrained optimum is one of them) and needs no scipy."""
    best, best_cost = np.zeros(x.shape[1]), float(y @ y)
    for size in range(1, x.shape[1] + 1):
        for cols in itertools.combinations(range(x.shape[1]), size):
            coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if (coef < 0).any():
                continue
            full = np.zeros(x.shape[1])
            full[list(cols)] = coef
            cost = float(np.sum((x @ full - y) ** 2))
            if cost < best_cost - 1e-15:
                best, best_cost = full, cost
    return best


def _finish(law, points, params) -> ScalingFit:
    fit = ScalingFit(law, points, params, 0.0)
    errors = [fit.speedup(n) - s for n, s in points]
    return ScalingFit(law, points, params, float(np.sqrt(np.mean(np.square(errors)))))


def _distinct_counts(points) -> int:
    return len({n for n, _ in points})


def fit_amdahl(points: Iterable[tuple[int, float]]) -> ScalingFit:
    """Fit Amdahl's serial fraction ``s`` (kept in [0, 1]) to (workers, speedup) points,
    speedups relative to one worker.

    Raises ValueError "needs >= 2 worker counts" unless the points hold 1 worker and at
    least one other count (S(1) = 1 by definition, so one count says nothing).

    >>> fit = fit_amdahl([(1, 1.0), (2, 1.6), (4, 2.29)])
    >>> round(fit.params["s"], 2)
    0.25
    """
    points = _clean(points)
    if _distinct_counts(points) < 2 or all(n == 1 for n, _ in points):
        raise ValueError("needs >= 2 worker counts")
    x, y = _design(points, [lambda n: 1.0 - 1.0 / n])
    (s,) = _nonnegative_lstsq(x, y)
    return _finish("amdahl", points, {"s": float(min(s, 1.0))})


def fit_usl(points: Iterable[tuple[int, float]]) -> ScalingFit:
    """Fit the USL's contention ``a`` and coherency ``b`` (both >= 0) to (workers,
    speedup) points, speedups relative to one worker.

    Raises ValueError "needs >= 3 worker counts": two parameters need two counts besides
    the 1-worker point.

    >>> fit = fit_usl([(1, 1.0), (2, 1.8), (4, 2.8), (8, 3.3)])
    >>> fit.params["a"] > 0 and fit.params["b"] > 0
    True
    """
    points = _clean(points)
    if len({n for n, _ in points if n > 1}) < 2:
        raise ValueError("needs >= 3 worker counts")
    x, y = _design(points, [lambda n: (n - 1.0) / n, lambda n: n - 1.0])
    a, b = _nonnegative_lstsq(x, y)
    return _finish("usl", points, {"a": float(a), "b": float(b)})
