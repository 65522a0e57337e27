"""What a compare result says about more cores than this machine has, and no more: each
model's measured per-item dispatch cost bounds its speedup (ceilings), and the scaling laws
(Amdahl, USL) are fitted only where at least three worker counts were measured within the
usable cores. On a 2-core machine that means bounds and a sentence, never 64-core figures.
"""

from dataclasses import dataclass

from gilstudy._table import format_table
from gilstudy.compare.fit import PROJECT_AT, ScalingFit, fit_amdahl, fit_usl
from gilstudy.compare.result import CompareResult

__all__ = ["Ceiling", "Projection", "ceilings", "projections", "projection_text",
           "MIN_LAW_COUNTS", "seconds_text"]

# Worker counts (1 included) within the usable cores that a scaling law needs: with two,
# Amdahl's one parameter passes exactly through the second point and predicts nothing.
MIN_LAW_COUNTS = 3


@dataclass(frozen=True)
class Ceiling:
    """The most one model can gain from more workers, from two measured times: its
    dispatch cost per item (``dispatch_s``, measured with ``workers`` workers on items that
    do no work) and the time one worker takes per item (``item_s``). A dispatcher that needs
    c seconds per item cannot run items of d seconds more than d / c times faster than one
    worker, nor N workers more than N times. None where a time is missing."""

    model: str
    interpreter: str
    workers: int
    dispatch_s: float | None
    item_s: float | None

    @property
    def bound(self) -> float | None:
        if not self.dispatch_s or self.item_s is None:
            return None
        return self.item_s / self.dispatch_s

    def at(self, cores: int) -> float:
        """The ceiling on ``cores`` cores: min(cores, d / c)."""
        return cores if self.bound is None else min(float(cores), self.bound)


@dataclass(frozen=True)
class Projection:
    """One scaling law fitted to one model's measured points under one interpreter, or
    why it was not (``reason``)."""

    model: str
    interpreter: str
    law: str
    points: tuple[tuple[int, float], ...]
    fit: ScalingFit | None
    reason: str | None

    def at(self, cores: int) -> float | None:
        return None if self.fit is None else self.fit.speedup(cores)


def _scaling_models(result: CompareResult):
    """(info, rows) of every model measured at more than one worker count allowed."""
    for info in result.models:
        rows = result.rows_of(info.name, info.interpreter)
        if rows and info.max_workers != 1:
            yield info, rows


def ceilings(result: CompareResult) -> list[Ceiling]:
    """One Ceiling per multi-worker model: its dispatch cost at the largest worker count
    within the usable cores, and its 1-worker time per item."""
    found = []
    for info, rows in _scaling_models(result):
        fitting = [r for r in rows if not r.oversubscribed] or rows
        widest = max(fitting, key=lambda r: r.workers)
        one = next((r for r in rows if r.workers == 1), None)
        item_s = None if one is None else one.median_s / result.workload.items_count
        found.append(Ceiling(info.name, info.interpreter, widest.workers, widest.dispatch_s,
                             item_s))
    return found


def projections(result: CompareResult) -> list[Projection]:
    """Amdahl and the USL fitted to each multi-worker model's speedups over its own
    1-worker run, at worker counts up to the usable cores (oversubscribed counts measure
    time-sharing, not more cores), when there are at least MIN_LAW_COUNTS of them; else
    the reason."""
    found = []
    for info, rows in _scaling_models(result):
        points = tuple((r.workers, r.speedup_vs_own_1) for r in rows
                       if not r.oversubscribed and r.speedup_vs_own_1 is not None)
        for law, fitter in (("amdahl", fit_amdahl), ("usl", fit_usl)):
            if not any(r.workers == 1 for r in rows):
                reason = "needs a 1-worker run to compare with"
            elif len(points) < MIN_LAW_COUNTS:
                reason = (f"needs >= {MIN_LAW_COUNTS} worker counts within the "
                          f"{result.usable_cores} usable cores, measured {len(points)}")
            else:
                try:
                    found.append(Projection(info.name, info.interpreter, law, points,
                                            fitter(points), None))
                    continue
                except ValueError as exc:
                    reason = f"{exc} within the {result.usable_cores} usable cores"
            found.append(Projection(info.name, info.interpreter, law, points, None, reason))
    return found


def seconds_text(seconds: float | None) -> str:
    """'12.3 us', '4.56 ms', '1.23 s'; '-' for None."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def projection_text(result: CompareResult) -> str:
    """The ceilings, and the fitted laws where there are enough points (else one sentence
    saying why there are none), marked as projections."""
    found = ceilings(result)
    if not found:
        return ""
    cores = result.usable_cores
    lines = [f"PROJECTION, not a measurement. Past the {cores} usable cores only bounds are "
             "known: a model whose dispatcher needs c seconds per item cannot run items of d "
             "seconds more than d/c times faster than one worker, nor N workers more than N "
             "times. c is measured on items that do no work, at the widest worker count "
             "within the cores; more workers seldom cost less per item."]
    cells = [["model", "dispatch c per item", "item time d", "ceiling d/c",
              *[f"at most, {n} cores" for n in PROJECT_AT]]]
    for c in found:
        name = result.name_of(c.model, c.interpreter)
        dispatch = (f"{seconds_text(c.dispatch_s)} (w{c.workers})" if c.dispatch_s
                    else "no items handed over")
        cells.append([name, dispatch, seconds_text(c.item_s),
                      "-" if c.bound is None else f"{c.bound:,.0f}x",
                      *[f"{c.at(n):,.1f}x" for n in PROJECT_AT]])
    lines.append(format_table(cells, right=range(1, len(cells[0]))))
    fitted = [p for p in projections(result) if p.fit is not None]
    if not fitted:
        lines.append(f"No scaling law is fitted: Amdahl's law and the USL are fitted only to "
                     f"{MIN_LAW_COUNTS} or more worker counts within the usable cores, and "
                     f"this run measured fewer on {cores} usable cores. Figures for more "
                     "cores need a machine that has them.")
        return "\n".join(lines)
    lines.append("Scaling laws fitted (least squares, parameters >= 0) to the speedups over "
                 "each model's own 1-worker run: Amdahl S(N)=1/(s+(1-s)/N), USL "
                 "S(N)=N/(1+a(N-1)+bN(N-1)).")
    cells = [["model", "law", "points (workers: speedup)", "parameters",
              *[f"{n} cores" for n in PROJECT_AT]]]
    for p in fitted:
        points = ", ".join(f"{n}: {s:.2f}" for n, s in p.points)
        cells.append([result.name_of(p.model, p.interpreter), p.law, points,
                      f"{p.fit.describe_params()} (rms {p.fit.rms_error:.2f})",
                      *[f"{p.at(n):.1f}x" for n in PROJECT_AT]])
    lines.append(format_table(cells, right={4, 5, 6}))
    return "\n".join(lines)
