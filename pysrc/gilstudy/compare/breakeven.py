"""`gilstudy breakeven`: how much work must one item hold before a model pays for handing it
to a worker? For each model, a sweep of equal items from about 10 us to 100 ms of work each
(a kernel, or the user's function of a size), timed against the serial run of the same
implementation, gives its speedup per item duration and the smallest duration that reaches
1.5x; the repeats are measured as compare measures them (compare/measure.py).
"""

import datetime
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from gilstudy import _checks, machine
from gilstudy._table import format_table
from gilstudy.compare import registry
from gilstudy.compare.function import make_function_workload
from gilstudy.compare.measure import Repeat, Timing, dispatch_cost, measure_repeat
from gilstudy.compare.projection import seconds_text
from gilstudy.compare.facts import workers_text
from gilstudy.compare.report import markdown_table, unavailable_notes
from gilstudy.compare.runner import check_workers, environment, model_error, stop_all
from gilstudy.compare.workload import Work, combine_indexed, make_workload, same_answer
from gilstudy.errors import WrongAnswer
from gilstudy.kernels import IMPLS
from gilstudy.timing import Samples, repeat_for

__all__ = ["run", "BreakevenResult", "Point", "Curve", "TARGETS_S", "GOAL", "SCHEMA_VERSION",
           "default_workers", "sized_args"]

SCHEMA_VERSION = 1

# Item durations swept by default: half-decades from 10 us to 100 ms.
TARGETS_S = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# The speedup over the serial run at which a model is said to pay.
GOAL = 1.5
# Serial work per pass aimed at (items = this / item duration), between the bounds below:
# enough items for the dispatch cost to show, few enough for the slow pools.
_PASS_WORK_S = 0.05
_MAX_ITEMS = 2000
_MIN_ITEMS_PER_WORKER = 4
# A calibration call is timed over passes adding up to this.
_CALIBRATE_S = 0.01

# Each kernel's item of work of size s, roughly proportional to s.
_KERNEL_ARGS = {
    "countdown": lambda size: (size,),
    "count_primes": lambda size: (0, size),
    "mandelbrot": lambda size: (size, 1, 200, 0, 1),
}


def sized_args(kernel: str | None, size: int) -> tuple:
    """The arguments of one item of ``size``: the kernel's (``countdown(size)``,
    ``count_primes(0, size)``, one row of ``size`` mandelbrot pixels) or, for a user's
    function (``kernel`` None), ``(size,)``."""
    return (size,) if kernel is None else _KERNEL_ARGS[kernel](size)


def default_workers() -> list[int]:
    """2 workers and all the usable cores."""
    return sorted({2, machine.usable_cores()})


class _SizedItems(Work):
    """``count`` equal items, each ``args``, for the consumers of ``base`` (a kernel's or a
    function's workload, which it defers to for everything but the items); its answer is
    the list of the items' results."""

    def __init__(self, base: Work, args: tuple, count: int):
        self.base = base
        self.args = args
        self.items_count = count
        self.title = base.title

    def items(self):
        return [(i, self.args) for i in range(self.items_count)]

    def combine(self, results):
        return combine_indexed(self.title, self.items_count, results)

    def consumer_factory(self, impl):
        return self.base.consumer_factory(impl)

    def probe_args(self):
        return self.base.probe_args()

    def impl_label(self, impl):
        return self.base.impl_label(impl)

    def impl_reason(self, impl):
        return self.base.impl_reason(impl)

    def importable_reason(self, impl):
        return self.base.importable_reason(impl)

    def describe(self) -> str:
        return f"{self.items_count} items of {self.title}{self.args}"


@dataclass
class Point:
    """One item duration of the sweep for one implementation: the size that takes about
    ``target_s`` serially, the items per pass, and the serial repeats timed beside the
    models at each worker count."""

    impl: str
    target_s: float
    size: int
    items: int
    serial: dict[int, list[Repeat]] = field(default_factory=dict)

    @property
    def item_s(self) -> float:
        """Measured serial seconds per item: the median pass over the items, in the round
        of the fewest workers."""
        return _median(self.serial[min(self.serial)]) / self.items


@dataclass
class Curve:
    """One model at one worker count across the sweep: per point (by target), its repeats,
    and its dispatch cost per item."""

    model: str
    registered_as: str
    impl: str
    workers: int
    dispatch_s: float | None = None
    repeats: dict[float, list[Repeat]] = field(default_factory=dict)


def _median(repeats: list[Repeat]) -> float:
    return Samples([r.per_pass_s for r in repeats]).median


@dataclass
class BreakevenResult:
    """What one `gilstudy breakeven` sweep measured; show it with answer_lines(), table(),
    report() (the answer first), to_json(), plot(path)."""

    title: str
    points: list[Point]
    curves: list[Curve]
    unavailable: dict[str, str]
    timing: Timing
    repeat: int
    idle: machine.IdleCheck
    environment: dict
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))

    def point(self, impl: str, target_s: float) -> Point:
        return next(p for p in self.points if p.impl == impl and p.target_s == target_s)

    def speedups(self, curve: Curve) -> list[tuple[float, float]]:
        """(measured serial seconds per item, speedup over the serial run) per point."""
        found = []
        for target, repeats in sorted(curve.repeats.items()):
            point = self.point(curve.impl, target)
            found.append((point.item_s, _median(point.serial[curve.workers]) / _median(repeats)))
        return found

    def breakeven_s(self, curve: Curve) -> float | None:
        """The smallest measured item duration at which the model beats the serial run by
        GOAL (its median repeat) and from which on it does so at every larger duration,
        within the spread of its repeats (its fastest repeat reaches GOAL there: one noisy
        median above the break-even does not move it); None if it never does."""
        found = None
        fastest = [_median(point.serial[curve.workers]) / min(r.per_pass_s for r in repeats)
                   for point, repeats in ((self.point(curve.impl, target), repeats)
                                          for target, repeats in sorted(curve.repeats.items()))]
        for (item_s, speedup), best in reversed(list(zip(self.speedups(curve), fastest))):
            if best < GOAL:
                break
            if speedup >= GOAL:
                found = item_s
        return found

    def _cells(self) -> list[list[str]]:
        targets = sorted({p.target_s for p in self.points})
        cells = [["model", "workers", "dispatch c", f"pays {GOAL:g}x from",
                  *[seconds_text(t) for t in targets]]]
        for curve in self.curves:
            by_target = dict(zip(sorted(curve.repeats), self.speedups(curve)))
            breakeven = self.breakeven_s(curve)
            cells.append([curve.model, str(curve.workers), seconds_text(curve.dispatch_s),
                          "never" if breakeven is None else seconds_text(breakeven),
                          *[f"{by_target[t][1]:.2f}x" if t in by_target else "-"
                            for t in targets]])
        return cells

    def _notes(self) -> list[str]:
        notes = [f"columns: speedup over the serial run of the same implementation, per "
                 f"item of about that much work; 'pays {GOAL:g}x from': the smallest item "
                 f"duration (measured serially) at which the model is at least {GOAL:g}x as "
                 "fast as the serial run, and from which on its fastest repeat stays so; "
                 "dispatch c: seconds per item that does no work"]
        notes += [f"item durations measured serially ({impl}): " + ", ".join(
            f"{seconds_text(p.item_s)} (size {p.size}, {p.items} items)"
            for p in self.points if p.impl == impl)
            for impl in dict.fromkeys(p.impl for p in self.points)]
        repeats = [r for c in self.curves for rs in c.repeats.values() for r in rs]
        repeats += [r for p in self.points for rs in p.serial.values() for r in rs]
        rerun = sum(r.tries > 1 or r.disturbed for r in repeats)
        notes.append(f"outside load: {rerun} of {len(repeats)} timed repeats were disturbed "
                     f"(other processes used more than {self.timing.max_outside_cores:g} "
                     f"cores) and run again; {sum(r.disturbed for r in repeats)} stayed "
                     "disturbed")
        notes += unavailable_notes(self.unavailable)
        return notes

    def header(self) -> str:
        m = self.environment["machine"]
        return (f"gilstudy breakeven: {self.title}, items of about "
                f"{seconds_text(min(p.target_s for p in self.points))} to "
                f"{seconds_text(max(p.target_s for p in self.points))} of work, median of "
                f"{self.repeat} interleaved repeats of at least {self.timing.min_time_s:g} s\n"
                f"python {m['python']} ({m['interpreter']}, GIL "
                f"{'enabled' if m['gil_enabled'] else 'disabled'}), {m['cpu_model']}, "
                f"{m['usable_cores']} usable cores; {self.idle.describe()}")

    def table(self) -> str:
        cells = self._cells()
        return "\n".join([format_table(cells, right=range(1, len(cells[0]))), *self._notes()])

    def to_markdown(self) -> str:
        return markdown_table(self._cells(), self._notes())

    def pays_from(self) -> dict[int, list[tuple[str, float | None]]]:
        """Per worker count, each model and the item duration from which it pays
        (breakeven_s(); None: never in the sweep), those that pay soonest first."""
        found: dict[int, list[tuple[str, float | None]]] = {}
        for curve in self.curves:
            found.setdefault(curve.workers, []).append((curve.model, self.breakeven_s(curve)))
        return {n: sorted(pairs, key=lambda p: (p[1] is None, p[1] or 0.0))
                for n, pairs in sorted(found.items())}

    def answer_lines(self) -> list[str]:
        """The answer first, as compare gives it: per worker count, the item duration from
        which each model pays GOAL x the serial run, and what to do with smaller items."""
        m = self.environment["machine"]
        lines = [f"Answer for items of {self.title} on this machine ({m['usable_cores']} usable "
                 f"cores, python {m['python']}, GIL "
                 f"{'enabled' if m['gil_enabled'] else 'disabled'}): the smallest item of work "
                 f"from which each model runs {GOAL:g}x as fast as the serial run"]
        best = None
        for n, pairs in self.pays_from().items():
            paying = [(name, s) for name, s in pairs if s is not None]
            never = [name for name, s in pairs if s is None]
            text = f"With {workers_text(n)}: " + (", ".join(
                f"{name} from {seconds_text(s)}" for name, s in paying) or "no model pays")
            if never:
                text += f"; never within the sweep: {', '.join(never)}"
            lines.append(text + ".")
            if paying and (best is None or paying[0][1] < best[2]):
                best = (paying[0][0], n, paying[0][1])
        if best is not None:
            lines.append(f"Next: for items under {seconds_text(best[2])} of work, nothing here "
                         f"pays; batch them into bigger items. From there, {best[0]} with "
                         f"{workers_text(best[1])} pays first.")
        else:
            lines.append("Next: no model paid even for the largest items swept; try larger "
                         "items (--durations) or check the outside load.")
        if not self.idle.idle:
            lines.append(f"Caution: {self.idle.describe()} before timing; parallel figures "
                         "look worse than they are.")
        return lines[:10]

    def report(self, markdown: bool = False) -> str:
        first, *rest = self.answer_lines()
        answer = ("\n".join([f"**{first}**", "", *[f"- {line}" for line in rest]]) if markdown
                  else "\n".join([first, *[f"  {line}" for line in rest]]))
        return "\n\n".join([answer, self.header(),
                             self.to_markdown() if markdown else self.table()])

    def to_dict(self) -> dict:
        from gilstudy import __version__

        return {
            "schema_version": SCHEMA_VERSION, "tool": "gilstudy breakeven",
            "gilstudy_version": __version__, "created": self.created, "title": self.title,
            "goal": GOAL, "repeat": self.repeat, "timing": self.timing.to_dict(),
            "environment": {**self.environment, "idle_check": {
                "idle": self.idle.idle, "text": self.idle.describe()}},
            "points": [{"impl": p.impl, "target_s": p.target_s, "size": p.size,
                        "items": p.items, "item_s": p.item_s,
                        "serial": {str(n): [r.to_dict() for r in rs]
                                   for n, rs in p.serial.items()}} for p in self.points],
            "curves": [{"model": c.model, "registered_as": c.registered_as, "impl": c.impl,
                        "workers": c.workers, "dispatch_s": c.dispatch_s,
                        "breakeven_s": self.breakeven_s(c),
                        "points": [{"target_s": t, "item_s": s[0], "speedup": s[1],
                                    "repeats": [r.to_dict() for r in c.repeats[t]]}
                                   for t, s in zip(sorted(c.repeats), self.speedups(c))]}
                       for c in self.curves],
            "unavailable": dict(self.unavailable),
            "answer": {"pays_from": {str(n): dict(pairs) for n, pairs in self.pays_from().items()},
                       "text": self.answer_lines()},
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def plot(self, path: str | Path) -> Path:
        """Efficiency (speedup per worker) against the item duration, one line per model
        (in its family's colour, compare.style.FamilyStyler), one panel per worker count;
        returns the path written. Raises ModuleNotFoundError without matplotlib."""
        from gilstudy.compare.style import FamilyStyler, dodge, legend_beside, new_figure, save

        counts = sorted({c.workers for c in self.curves})
        figure, panels = new_figure(len(counts))
        styler = FamilyStyler()
        families = {m.name: m.family for m in registry.all_models()}
        curves = sorted(self.curves, key=lambda c: c.impl != "python")
        names = list(dict.fromkeys(c.model for c in curves))
        for axes, n in zip(panels, counts):
            for curve in (c for c in curves if c.workers == n):
                points = self.speedups(curve)
                xs = dodge([d for d, _ in points], names.index(curve.model), len(names))
                axes.plot(xs, [s / n for _, s in points], label=curve.model,
                          **styler.style(curve.model,
                                         families.get(curve.registered_as, "other"),
                                         curve.impl))
            axes.axhline(GOAL / n, color="grey", linestyle="--", linewidth=0.8)
            axes.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
            axes.set_xscale("log")
            axes.set_ylim(bottom=0)
            axes.set_xlabel("work per item, measured serially (s, log)")
            axes.set_ylabel("efficiency: speedup over serial / workers")
            axes.set_title(f"{workers_text(n)} (dashed: {GOAL:g}x the serial run)")
            axes.grid(True, alpha=0.3)
        m = self.environment["machine"]
        figure.suptitle(f"gilstudy breakeven: {self.title}; python {m['python']} (GIL "
                        f"{'enabled' if m['gil_enabled'] else 'disabled'}), "
                        f"{m['usable_cores']} usable cores, {m['cpu_model']}",
                        fontsize="medium")
        legend_beside(figure, panels, names,
                      title="circles, dashed: Python\nsquares, solid: compiled")
        return save(figure, path)


# ---- measuring ------------------------------------------------------------------------

def _calibrate(call: Callable[[int], object], targets: list[float]) -> dict[float, int]:
    """The size at which ``call(size)`` takes about each target, by doubling the size from
    1 until a call outlasts the largest target and interpolating between the sizes around
    each target on a log-log scale. Targets below the time of size 1, or above the time of
    the largest size tried (2**40: a call that does not grow with its size), are left out."""
    timed: list[tuple[int, float]] = []
    size = 1
    while True:
        passes = repeat_for(lambda: call(size), _CALIBRATE_S)
        timed.append((size, min(passes.pass_s)))
        if timed[-1][1] >= 1.2 * max(targets) or size >= 2**40:
            break
        size *= 2
    sizes = {}
    for target in targets:
        if not timed[0][1] <= target <= max(t for _, t in timed):
            continue
        below = max((t for t in timed if t[1] <= target), key=lambda t: t[0])
        above = min((t for t in timed if t[1] >= target), key=lambda t: t[0], default=below)
        if above[0] == below[0] or above[1] <= below[1]:
            sizes[target] = below[0]
            continue
        fraction = math.log(target / below[1]) / math.log(above[1] / below[1])
        sizes[target] = max(1, round(below[0] * (above[0] / below[0]) ** fraction))
    return sizes


def _items_for(target_s: float, counts: list[int]) -> int:
    """Items per pass: about _PASS_WORK_S of serial work, at least a few per worker, a
    multiple of every worker count so that none waits on a straggler."""
    step = math.lcm(*counts)
    wanted = min(_MAX_ITEMS, max(_MIN_ITEMS_PER_WORKER * max(counts),
                                 round(_PASS_WORK_S / target_s)))
    return step * math.ceil(wanted / step)


def _base(kernel: str | None, function, nogil) -> Work:
    if function is None:
        return make_workload(kernel or "countdown", 1, 1)
    if kernel is not None:
        raise ValueError("breakeven: kernel cannot go with function=")
    return make_function_workload(function, [(1,)], nogil)


def run(kernel: str | None = None, *, function=None, nogil=None,
        workers: Iterable[int] | None = None, models: str | Iterable[str] | None = None,
        targets_s: Iterable[float] = TARGETS_S, repeat: int = 3,
        min_time_s: float = 0.2, max_outside_cores: float = 0.5, reruns: int = 2,
        idle_timeout_s: float = 30.0,
        progress: Callable[[int, int, str], None] | None = None) -> BreakevenResult:
    """Sweep the work per item over ``targets_s`` (seconds of serial work per item) for
    every selected model at each worker count (default: 2 and the usable cores), against
    the serial model of the same implementation; return the BreakevenResult. ``models``
    defaults to the quick set (registry.quick_models()); "all" is every model. Only the
    models that hand items to workers are swept.

    The work is ``kernel`` (default countdown) or a user's ``function`` of one size
    argument, roughly proportional to it (``nogil``: its GIL-releasing twin, run by the
    "-cython" models), as callables or "MODULE:NAME". For each implementation the size
    for each target is found by timing the serial call at doubling sizes. Each point is a
    pass over equal items; repeats are measured like compare's (compare.measure: passes
    until ``min_time_s``, re-run when other processes used more than
    ``max_outside_cores``), every model interleaved with the serial runs, and every answer
    is checked against the serial one. Each model's dispatch cost per item is measured too.

    Raises TypeError or ValueError for bad arguments before anything runs; ModelFailed or
    WrongAnswer (naming the model) once running. Every worker is stopped either way.
    """
    base = _base(kernel, function, nogil)
    counts = default_workers() if workers is None else check_workers(workers)
    targets = sorted({float(t) for t in targets_s})
    if not targets or not all(0 < t < math.inf for t in targets):
        raise ValueError(f"breakeven: targets_s must be seconds > 0, got {targets!r}")
    repeat = _checks.positive_int("breakeven", "repeat", repeat)
    timing = Timing(min_time_s, max_outside_cores, reruns)
    chosen = [m for m in registry.select(models) if m.max_workers != 1 and m.dispatches_items]
    serials = {impl: registry.get(f"serial-{impl}") for impl in IMPLS}
    unavailable = {m.label_for(base): m.unavailable_reason(base) for m in chosen
                   if m.unavailable_reason(base)}
    # A model of an optional implementation (numba-threads) has no serial model to be timed
    # against: say so rather than leave it out.
    unavailable.update({m.label_for(base): f"breakeven times a model against the serial model "
                        f"of its implementation, and there is no serial-{m.impl}"
                        for m in chosen if m.impl not in IMPLS
                        and m.label_for(base) not in unavailable})
    chosen = [m for m in chosen if m.label_for(base) not in unavailable]
    impls = [impl for impl in IMPLS if any(m.impl == impl for m in chosen)
             and serials[impl].unavailable_reason(base) is None]
    chosen = [m for m in chosen if m.impl in impls]
    kernel_name = None if function is not None else (kernel or "countdown")

    done, total = 0, 1 + len(counts) * len(targets) * repeat * (len(chosen) + len(impls))

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    idle = machine.wait_for_idle_cpus(timeout_s=idle_timeout_s)
    points: list[Point] = []
    for impl in impls:
        consumer = base.consumer(impl)
        sizes = _calibrate(lambda size: consumer.send((0, sized_args(kernel_name, size))),
                           targets)
        points += [Point(impl, t, sizes[t], _items_for(t, counts)) for t in targets if t in sizes]
    step("calibrated")
    curves = [Curve(m.label_for(base), m.name, m.impl, n) for n in counts for m in chosen]
    for n in counts:
        _sweep(n, [c for c in curves if c.workers == n], chosen, serials, points, base,
               kernel_name, repeat, timing, step)
    return BreakevenResult(base.title, points, curves, unavailable, timing, repeat, idle,
                           environment())


def _sweep(workers: int, curves: list[Curve], chosen: list[registry.Model], serials: dict,
           points: list[Point], base: Work, kernel_name: str | None, repeat: int,
           timing: Timing, step) -> None:
    """Every point at ``workers`` workers: start each model once, then per point and repeat
    run the serial models and every model in turn; stop them all, whatever happens."""
    works = {(p.impl, p.target_s): _SizedItems(base, sized_args(kernel_name, p.size), p.items)
             for p in points}
    first = {p.impl: works[(p.impl, p.target_s)] for p in reversed(points)}
    handles: dict[str, object] = {}
    try:
        for impl, model in serials.items():
            if impl in first:
                handles[model.name] = _start(model, first[impl], 1)
        for curve, model in zip(curves, chosen):
            handle = handles[model.name] = _start(model, first[model.impl], workers)
            try:
                curve.dispatch_s = dispatch_cost(lambda w, h=handle: h.run(w, math.inf),
                                                 first[model.impl])
            except Exception as exc:
                raise model_error(curve.model, workers, "the dispatch probe", exc) from exc
        for point in points:
            work = works[(point.impl, point.target_s)]
            expected = handles[serials[point.impl].name].run(work, math.inf)
            for index in range(repeat):
                point.serial.setdefault(workers, []).append(
                    _repeat(handles[serials[point.impl].name], work, expected,
                            f"serial-{point.impl}", timing, index))
                step(f"serial-{point.impl} {seconds_text(point.target_s)}")
                for curve, model in zip(curves, chosen):
                    if model.impl != point.impl:
                        continue
                    curve.repeats.setdefault(point.target_s, []).append(
                        _repeat(handles[model.name], work, expected, curve.model, timing,
                                index, workers))
                    step(f"{curve.model} w{workers} {seconds_text(point.target_s)}")
    finally:
        stop_all(handles, workers, quietly=sys.exc_info()[0] is not None)


def _start(model: registry.Model, work: Work, workers: int):
    try:
        return model.launch(work, workers)
    except Exception as exc:
        raise model_error(model.label_for(work), workers, "starting its workers", exc) from exc


def _repeat(handle, work: Work, expected, name: str, timing: Timing, index: int,
            workers: int = 1) -> Repeat:
    def check(answer) -> None:
        if not same_answer(answer, expected):
            raise WrongAnswer(f"{name} with {workers_text(workers)} computed a wrong answer "
                              f"for {work.describe()} (repeat {index + 1})", subject=name)

    try:
        return measure_repeat(lambda: handle.run(work, math.inf), check, timing)[0]
    except WrongAnswer as exc:
        if exc.subject == name:
            raise
        raise model_error(name, workers, f"repeat {index + 1}", exc) from exc
    except Exception as exc:
        raise model_error(name, workers, f"repeat {index + 1}", exc) from exc
