# What `gilstudy compare` found, and every way of showing it: the CompareResult the runner
# returns, its table (plain or markdown), a plain-language verdict, scaling projections and
# the JSON document (schema below). Nothing here looks at a model's name: facts about a
# model come from its registry entry, copied into ModelInfo.

import datetime
import json
import math
import statistics
from dataclasses import dataclass, field

from gilstudy.compare.fit import PROJECT_AT, ScalingFit, fit_amdahl, fit_usl
from gilstudy.compare.workload import Workload, answer_summary, size_means
from gilstudy.machine import IdleCheck

__all__ = ["SCHEMA_VERSION", "ModelInfo", "Row", "Projection", "CompareResult"]

# Version of the JSON document written by CompareResult.to_json(); raised whenever a key
# changes meaning or goes away (adding keys does not change it).
#
# Schema 1, every key always present (null where a figure does not exist):
#   schema_version  int, 1
#   tool            "gilstudy compare";  gilstudy_version  str;  created  ISO 8601 UTC time
#   workload        {kernel, size, size_means, items, whole_args [..], answer}: answer is
#                   the serial-python answer: a number, or for an image {shape, dtype,
#                   sum, sha256 (first 16 hex digits)}
#   settings        {workers [int], repeat int, models [names asked for], reference str}
#   environment     {machine: gilstudy.machine.describe(), build: gilstudy.kernels.
#                   build_info() (Cython version, compiler, cflags, openmp, ...),
#                   versions {python, numpy, cython, joblib|null}, idle_check {idle,
#                   busy_cores|null, waited_s, measured, text}, reference_run_s}
#   models          [{name, impl, summary, available, reason|null, reusable, max_workers|
#                   null, shares_gil}] for every model asked for, runnable or not
#   rows            [{model, impl, workers, oversubscribed, restarted_per_repeat,
#                   startup_s [s per start], work_s [s per repeat], median_s, spread,
#                   speedup_vs_serial, speedup_vs_own_1|null, efficiency|null}]
#   projections     [{model, law "amdahl"|"usl", points [[workers, speedup vs own 1 worker]],
#                   params {s}|{a, b}|null, rms_error|null, projected {"4","16","64": speedup}
#                   |null, reason|null (why there is no fit)}]
#   verdict         [sentences]
SCHEMA_VERSION = 1

# A model "helped" when its best speedup over its own 1-worker run reaches this.
_HELPED = 1.2


@dataclass(frozen=True)
class ModelInfo:
    """What the report needs to know of a model: its registry entry's facts, and whether
    it could run here (``reason`` says why not)."""

    name: str
    impl: str
    summary: str
    available: bool
    reason: str | None
    reusable: bool
    max_workers: int | None
    shares_gil: bool


@dataclass
class Row:
    """One model at one worker count: raw seconds and the figures derived from them."""

    model: str
    impl: str
    workers: int
    oversubscribed: bool
    restarted: bool
    startup_s: list[float] = field(default_factory=list)
    work_s: list[float] = field(default_factory=list)
    speedup_vs_serial: float | None = None
    speedup_vs_own_1: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.work_s)

    @property
    def startup_median_s(self) -> float:
        return statistics.median(self.startup_s) if self.startup_s else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats: how much they disagree, as a fraction."""
        median = self.median_s
        return 0.0 if median == 0 else (max(self.work_s) - min(self.work_s)) / median

    @property
    def efficiency(self) -> float | None:
        """Speedup over the model's own 1-worker run, per worker (1.0 is perfect)."""
        return None if self.speedup_vs_own_1 is None else self.speedup_vs_own_1 / self.workers


@dataclass(frozen=True)
class Projection:
    """One scaling law fitted to one model's measured points, or why it could not be."""

    model: str
    law: str
    points: tuple[tuple[int, float], ...]
    fit: ScalingFit | None
    reason: str | None

    def at(self, cores: int) -> float | None:
        return None if self.fit is None else self.fit.speedup(cores)


def workers_text(n: int) -> str:
    """'1 worker', '4 workers'."""
    return f"{n} worker{'' if n == 1 else 's'}"


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _align(table: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]

    def line(row):
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(table[0]), "  ".join("-" * w for w in widths), *map(line, table[1:])])


@dataclass
class CompareResult:
    """Everything one `gilstudy compare` run measured. Build it with
    gilstudy.compare.run(); show it with table(), to_markdown(), verdict(),
    projections(), report(); save it with to_json() or gilstudy.compare.plot()."""

    workload: Workload
    workers: list[int]
    repeat: int
    reference: str
    models: list[ModelInfo]
    rows: list[Row]
    answer: object
    reference_run_s: float
    idle: IdleCheck
    environment: dict
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))

    # ---- derived figures ------------------------------------------------------------

    def model(self, name: str) -> ModelInfo:
        return next(m for m in self.models if m.name == name)

    def rows_of(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.model == name]

    @property
    def usable_cores(self) -> int:
        return self.environment["machine"]["usable_cores"]

    @property
    def unavailable(self) -> dict[str, str]:
        return {m.name: m.reason for m in self.models if not m.available}

    def projections(self) -> list[Projection]:
        """Amdahl and USL fitted to each multi-worker model's speedups over its own
        1-worker run, at worker counts up to the usable cores (oversubscribed counts
        measure time-sharing, not more cores, so they are left out)."""
        projections = []
        for info in self.models:
            rows = self.rows_of(info.name)
            if not rows or info.max_workers == 1:
                continue
            points = tuple((r.workers, r.speedup_vs_own_1) for r in rows
                           if not r.oversubscribed and r.speedup_vs_own_1 is not None)
            for law, fitter in (("amdahl", fit_amdahl), ("usl", fit_usl)):
                if not any(r.workers == 1 for r in rows):
                    projections.append(Projection(info.name, law, (), None,
                                                  "needs a 1-worker run to compare with"))
                    continue
                try:
                    projections.append(Projection(info.name, law, points, fitter(points), None))
                except ValueError as exc:
                    reason = f"{exc} within the {self.usable_cores} usable cores"
                    projections.append(Projection(info.name, law, points, None, reason))
        return projections

    # ---- text -----------------------------------------------------------------------

    def _table_cells(self) -> list[list[str]]:
        header = ["model", "workers", "start-up s", "median s", "spread",
                  f"vs {self.reference}", "vs own 1 worker", "efficiency"]
        cells = [header]
        for r in self.rows:
            cells.append([
                r.model, f"{r.workers}{'*' if r.oversubscribed else ''}",
                f"{r.startup_median_s:.3f}{' (each)' if r.restarted else ''}",
                f"{r.median_s:.4f}", f"{100 * r.spread:.0f}%",
                _fmt(r.speedup_vs_serial, ".2f", "x"), _fmt(r.speedup_vs_own_1, ".2f", "x"),
                _fmt(r.efficiency, ".0%"),
            ])
        return cells

    def _table_notes(self) -> list[str]:
        notes = []
        if any(r.oversubscribed for r in self.rows):
            notes.append(f"* more workers than the {self.usable_cores} usable cores "
                         "(oversubscribed)")
        if any(r.restarted for r in self.rows):
            notes.append("(each): the model cannot reuse its workers, so they were started "
                         "and stopped around every repeat; the median start-up is shown")
        notes.extend(f"unavailable: {name}: {reason}" for name, reason in self.unavailable.items())
        return notes

    def table(self) -> str:
        """The results as an aligned plain-text table, with its footnotes."""
        text = _align(self._table_cells(), right=set(range(1, 8)))
        return "\n".join([text, *self._table_notes()])

    def to_markdown(self) -> str:
        """The results as a markdown table, with its footnotes."""
        cells = self._table_cells()
        lines = ["| " + " | ".join(cells[0]) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(cells[0]) - 1)) + "|"]
        lines += ["| " + " | ".join(c.replace("*", "\\*") for c in row) + " |" for row in cells[1:]]
        notes = self._table_notes()
        return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))

    def verdict(self) -> str:
        """A few plain sentences: who wins here, what start-up costs, whether threads
        helped under this interpreter's GIL."""
        return "\n".join(self._verdict_lines())

    def _verdict_lines(self) -> list[str]:
        lines = []
        kernel = self.workload.kernel
        best = min(self.rows, key=lambda r: r.median_s)
        lines.append(f"Fastest for {kernel} here: {best.model} with "
                     f"{workers_text(best.workers)}, {best.median_s:.4f} s, "
                     f"{_fmt(best.speedup_vs_serial, '.1f', 'x')} {self.reference}.")
        python_rows = [r for r in self.rows if r.impl == "python" and r.model != self.reference]
        if python_rows:
            top = min(python_rows, key=lambda r: r.median_s)
            if top.speedup_vs_serial is not None and top.speedup_vs_serial >= _HELPED:
                lines.append(f"Best with the pure-Python kernel: {top.model} with "
                             f"{workers_text(top.workers)}, {top.speedup_vs_serial:.1f}x {self.reference}.")
            else:
                lines.append(f"No model ran the pure-Python kernel much faster than "
                             f"{self.reference} (best: {top.model}, "
                             f"{_fmt(top.speedup_vs_serial, '.2f', 'x')}).")
        lines.extend(self._startup_lines())
        lines.extend(self._gil_lines())
        if not self.idle.idle:
            lines.append(f"Caution: {self.idle.describe()} before timing; other load makes "
                         "every parallel figure look worse than it is.")
        return lines

    def _startup_lines(self) -> list[str]:
        started = [r for r in self.rows if r.startup_s]
        if not started:
            return []
        costly = max(started, key=lambda r: r.startup_median_s)
        slowest: dict[str, float] = {}
        for r in started:
            slowest[r.model] = max(slowest.get(r.model, 0.0), r.startup_median_s)
        cheap = [name for name, seconds in slowest.items() if seconds < 0.01]
        text = (f"Start-up: {costly.model} took {costly.startup_median_s:.3f} s to start "
                f"{workers_text(costly.workers)}, "
                f"{_fmt(_ratio(costly.startup_median_s, costly.median_s), '.1f', 'x')} the "
                "time of one run of the workload on them: worth paying only when workers "
                "are reused.")
        if cheap:
            text += f" Under 10 ms: {', '.join(cheap)}."
        return [text]

    def _gil_lines(self) -> list[str]:
        gil = self.environment["machine"]["gil_enabled"]
        lines = []
        for info in self.models:
            rows = [r for r in self.rows_of(info.name)
                    if r.workers > 1 and r.speedup_vs_own_1 is not None]
            if not info.shares_gil or info.max_workers == 1 or not rows:
                continue
            top = max(rows, key=lambda r: r.speedup_vs_own_1)
            helped = top.speedup_vs_own_1 >= _HELPED
            if info.impl == "python":
                why = ("the GIL is enabled, so pure-Python threads take turns" if gil else
                       "the GIL is disabled in this build, so pure-Python threads can run "
                       "at once")
                outcome = "helped" if helped else "did not help"
                lines.append(f"{info.name}: threads {outcome} pure Python "
                             f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers); {why}.")
            else:
                lines.append(f"{info.name}: the compiled kernel releases the GIL; best "
                             f"{top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers.")
        return lines

    def projection_text(self) -> str:
        """The projections as text, marked as such, with the points and parameters."""
        projections = self.projections()
        if not projections:
            return ""
        head = [f"PROJECTION, not a measurement: speedup over each model's own 1-worker run "
                f"if this machine had more cores, from Amdahl's law S(N)=1/(s+(1-s)/N) and "
                f"the USL S(N)=N/(1+a(N-1)+bN(N-1)) fitted (least squares, parameters >= 0) "
                f"to the points measured at up to {self.usable_cores} workers."]
        cells = [["model", "law", "points (workers: speedup)", "parameters",
                  *[f"{n} cores" for n in PROJECT_AT]]]
        for p in projections:
            points = ", ".join(f"{n}: {s:.2f}" for n, s in p.points) or "-"
            if p.fit is None:
                cells.append([p.model, p.law, points, p.reason, *["-"] * len(PROJECT_AT)])
            else:
                cells.append([p.model, p.law, points,
                              f"{p.fit.describe_params()} (rms {p.fit.rms_error:.2f})",
                              *[f"{p.at(n):.1f}x" for n in PROJECT_AT]])
        return "\n".join(head + [_align(cells, right={4, 5, 6})])

    def header(self) -> str:
        m = self.environment["machine"]
        return (f"gilstudy compare: {self.workload.describe()}, median of {self.repeat} "
                f"interleaved repeats\n"
                f"python {m['python']} ({m['interpreter']}, GIL "
                f"{'enabled' if m['gil_enabled'] else 'disabled'}), {m['cpu_model']}, "
                f"{m['usable_cores']} usable cores; {self.idle.describe()}")

    def report(self, markdown: bool = False) -> str:
        """Header, table, verdict and projections: what the CLI prints."""
        parts = [self.header(), self.to_markdown() if markdown else self.table(),
                 "Verdict:\n" + "\n".join(f"- {line}" for line in self._verdict_lines())]
        projections = self.projection_text()
        if projections:
            parts.append(f"```\n{projections}\n```" if markdown else projections)
        return "\n\n".join(parts)

    # ---- JSON -----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The JSON document (schema SCHEMA_VERSION, described at the top of this module)."""
        from gilstudy import __version__

        idle = self.idle
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "gilstudy compare",
            "gilstudy_version": __version__,
            "created": self.created,
            "workload": {
                "kernel": self.workload.kernel,
                "size": self.workload.size,
                "size_means": size_means(self.workload.kernel),
                "items": self.workload.items_count,
                "whole_args": list(self.workload.whole_args()),
                "answer": answer_summary(self.answer),
            },
            "settings": {"workers": list(self.workers), "repeat": self.repeat,
                         "models": [m.name for m in self.models], "reference": self.reference},
            "environment": {
                **{k: v for k, v in self.environment.items()},
                "idle_check": {"idle": idle.idle, "busy_cores": _finite(idle.busy_cores),
                               "waited_s": idle.waited_s, "measured": idle.measured,
                               "text": idle.describe()},
                "reference_run_s": self.reference_run_s,
            },
            "models": [vars(m).copy() for m in self.models],
            "rows": [{
                "model": r.model, "impl": r.impl, "workers": r.workers,
                "oversubscribed": r.oversubscribed, "restarted_per_repeat": r.restarted,
                "startup_s": list(r.startup_s), "work_s": list(r.work_s),
                "median_s": r.median_s, "spread": r.spread,
                "speedup_vs_serial": r.speedup_vs_serial,
                "speedup_vs_own_1": r.speedup_vs_own_1, "efficiency": r.efficiency,
            } for r in self.rows],
            "projections": [{
                "model": p.model, "law": p.law, "points": [list(pt) for pt in p.points],
                "params": None if p.fit is None else dict(p.fit.params),
                "rms_error": None if p.fit is None else p.fit.rms_error,
                "projected": None if p.fit is None else {str(n): p.at(n) for n in PROJECT_AT},
                "reason": p.reason,
            } for p in self.projections()],
            "verdict": self._verdict_lines(),
        }

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def plot(self, path):
        """Write the PNG of gilstudy.compare.plot.plot() to ``path``; return the path."""
        from gilstudy.compare.plot import plot

        return plot(self, path)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
