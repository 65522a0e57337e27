# What `gilstudy compare` found, and every way of showing it: the CompareResult the runner
# returns, its table, a plain-language verdict, scaling projections, the JSON document
# (schema below) and the plot. A model's facts come from its registry entry (ModelInfo),
# never its name; with several interpreters each model shows once per interpreter.

import datetime
import json
import math
from dataclasses import dataclass, field

from gilstudy._table import format_table
from gilstudy.compare.fit import PROJECT_AT, ScalingFit, fit_amdahl, fit_usl
from gilstudy.compare.plot import plot as write_plot
from gilstudy.compare.workload import Workload, answer_summary, size_means
from gilstudy.machine import IdleCheck
from gilstudy.timing import Samples

__all__ = ["SCHEMA_VERSION", "ModelInfo", "Row", "Projection", "Interpreter", "CompareResult"]

# Version of the JSON document written by CompareResult.to_json(); raised whenever a key
# changes meaning or goes away (adding keys does not change it).
#
# Schema 2 (schema 1 had one interpreter, so a model and a worker count named one row; now
# a model appears once per interpreter in models, rows and projections, told apart by
# their "interpreter" label), every key always present (null where a figure does not exist):
#   schema_version  int, 2
#   tool            "gilstudy compare";  gilstudy_version  str;  created  ISO 8601 UTC time
#   workload        {kernel, size, size_means, items, whole_args [..], answer}: answer is
#                   the serial-python answer: a number, or for an image {shape, dtype,
#                   sum, sha256 (first 16 hex digits)}
#   settings        {workers [int], repeat int, models [names asked for], reference str,
#                   pythons [the other interpreters' paths, in order]}
#   environment     {machine: gilstudy.machine.describe(), build: gilstudy.kernels.
#                   build_info() (Cython version, compiler, cflags, openmp, ...),
#                   versions {python, numpy, cython, joblib|null}: all three of the default
#                   interpreter (the one that ran `gilstudy compare`); idle_check {idle,
#                   busy_cores|null, waited_s, measured, text}, reference_run_s (default
#                   interpreter), interpreters [{label ("3.11", "3.13t", "3.11#2" for a
#                   second 3.11), default bool, executable, gil_enabled (as its runs
#                   ended), reference_run_s, machine, build, versions}], default first}
#   models          [{name, impl, summary, available, reason|null, reusable, max_workers|
#                   null, shares_gil, interpreter}] for every model asked for under every
#                   interpreter, runnable or not
#   rows            [{model, interpreter, gil_enabled, impl, workers, oversubscribed,
#                   restarted_per_repeat, startup_s [s per start], work_s [s per repeat],
#                   median_s, spread, speedup_vs_serial (against the default interpreter's
#                   reference), speedup_vs_own_serial (against the reference under the
#                   row's own interpreter), speedup_vs_own_1|null, efficiency|null}]
#   projections     [{model, interpreter, law "amdahl"|"usl", points [[workers, speedup vs
#                   own 1 worker]], params {s}|{a, b}|null, rms_error|null, projected {"4",
#                   "16","64": speedup}|null, reason|null (why there is no fit)}]
#   verdict         [sentences]
SCHEMA_VERSION = 2

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
    interpreter: str


@dataclass
class Row:
    """One model at one worker count under one interpreter (its label, and whether its
    GIL was enabled as the runs began): raw seconds and the figures derived from them.
    ``speedup_vs_serial`` divides the default interpreter's reference time,
    ``speedup_vs_own_serial`` the reference time under the row's own interpreter."""

    model: str
    impl: str
    workers: int
    oversubscribed: bool
    restarted: bool
    interpreter: str
    gil_enabled: bool
    startup_s: list[float] = field(default_factory=list)
    work_s: list[float] = field(default_factory=list)
    speedup_vs_serial: float | None = None
    speedup_vs_own_serial: float | None = None
    speedup_vs_own_1: float | None = None

    @property
    def median_s(self) -> float:
        """The median of the repeats (gilstudy.timing.Samples says why the median)."""
        return Samples(self.work_s).median

    @property
    def startup_median_s(self) -> float:
        return Samples(self.startup_s).median if self.startup_s else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats: how much they disagree, as a fraction."""
        return Samples(self.work_s).spread

    @property
    def efficiency(self) -> float | None:
        """Speedup over the model's own 1-worker run, per worker (1.0 is perfect)."""
        return None if self.speedup_vs_own_1 is None else self.speedup_vs_own_1 / self.workers


@dataclass(frozen=True)
class Projection:
    """One scaling law fitted to one model's measured points under one interpreter, or
    why it could not be."""

    model: str
    interpreter: str
    law: str
    points: tuple[tuple[int, float], ...]
    fit: ScalingFit | None
    reason: str | None

    def at(self, cores: int) -> float | None:
        return None if self.fit is None else self.fit.speedup(cores)


@dataclass(frozen=True)
class Interpreter:
    """One interpreter the models ran under. ``label`` names it in rows ('3.11', '3.13t';
    '#2' is added when two share one); the default is the one that ran the comparison
    (``executable`` is then sys.executable, else the --python path). ``gil_enabled`` is
    its GIL state when its runs ended, ``environment`` its machine, build and versions
    (gilstudy.compare.runner.environment() there), ``reference_run_s`` its untimed
    reference run."""

    label: str
    executable: str
    is_default: bool
    gil_enabled: bool
    reference_run_s: float
    environment: dict


def workers_text(n: int) -> str:
    """'1 worker', '4 workers'."""
    return f"{n} worker{'' if n == 1 else 's'}"


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


@dataclass
class CompareResult:
    """Everything one `gilstudy compare` run measured. Build it with
    gilstudy.compare.run(); show it with table(), to_markdown(), verdict(),
    projections(), report(); save it with to_json() or gilstudy.compare.plot().

    ``interpreters`` lists the interpreters the models ran under, the default first;
    ``environment`` and ``reference_run_s`` are the default interpreter's. ``models`` and
    ``rows`` hold each model once per interpreter (ModelInfo.interpreter, Row.interpreter).
    """

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
    interpreters: list[Interpreter]
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))

    # ---- derived figures ------------------------------------------------------------

    @property
    def default_label(self) -> str:
        """The label of the interpreter that ran the comparison (the first)."""
        return self.interpreters[0].label

    @property
    def spans_interpreters(self) -> bool:
        """Whether more than one interpreter ran (then models are shown as model@label)."""
        return len(self.interpreters) > 1

    def name_of(self, model: str, interpreter: str) -> str:
        """How the report names ``model`` under ``interpreter``: 'threads-python', or
        'threads-python@3.13t' when several interpreters ran."""
        return f"{model}@{interpreter}" if self.spans_interpreters else model

    def interpreter(self, label: str) -> Interpreter:
        return next(i for i in self.interpreters if i.label == label)

    def model(self, name: str, interpreter: str | None = None) -> ModelInfo:
        """Model ``name`` under ``interpreter`` (default: the default interpreter)."""
        label = self.default_label if interpreter is None else interpreter
        return next(m for m in self.models if m.name == name and m.interpreter == label)

    def rows_of(self, name: str, interpreter: str | None = None) -> list[Row]:
        """The rows of model ``name`` under ``interpreter`` (default: the default
        interpreter), by worker count."""
        label = self.default_label if interpreter is None else interpreter
        return [r for r in self.rows if r.model == name and r.interpreter == label]

    def _row_name(self, row: Row) -> str:
        return self.name_of(row.model, row.interpreter)

    @property
    def usable_cores(self) -> int:
        return self.environment["machine"]["usable_cores"]

    @property
    def unavailable(self) -> dict[str, str]:
        """Why each model that could not run did not, by its name in the report."""
        return {self.name_of(m.name, m.interpreter): m.reason for m in self.models
                if not m.available}

    def projections(self) -> list[Projection]:
        """Amdahl and USL fitted to each multi-worker model's speedups over its own
        1-worker run, at worker counts up to the usable cores (oversubscribed counts
        measure time-sharing, not more cores, so they are left out)."""
        projections = []
        for info in self.models:
            rows = self.rows_of(info.name, info.interpreter)
            if not rows or info.max_workers == 1:
                continue
            points = tuple((r.workers, r.speedup_vs_own_1) for r in rows
                           if not r.oversubscribed and r.speedup_vs_own_1 is not None)
            for law, fitter in (("amdahl", fit_amdahl), ("usl", fit_usl)):
                if not any(r.workers == 1 for r in rows):
                    projections.append(Projection(info.name, info.interpreter, law, (), None,
                                                  "needs a 1-worker run to compare with"))
                    continue
                try:
                    projections.append(Projection(info.name, info.interpreter, law, points,
                                                  fitter(points), None))
                except ValueError as exc:
                    reason = f"{exc} within the {self.usable_cores} usable cores"
                    projections.append(Projection(info.name, info.interpreter, law, points,
                                                  None, reason))
        return projections

    # ---- text -----------------------------------------------------------------------

    def _table_cells(self) -> list[list[str]]:
        # With one interpreter "vs its own serial" would repeat "vs serial", so it is left out.
        several = self.spans_interpreters
        header = ["model", "workers", "start-up s", "median s", "spread",
                  f"vs {self.name_of(self.reference, self.default_label)}",
                  *([f"vs {self.reference}@own"] if several else []),
                  "vs own 1 worker", "efficiency"]
        cells = [header]
        for r in self.rows:
            cells.append([
                self._row_name(r), f"{r.workers}{'*' if r.oversubscribed else ''}",
                f"{r.startup_median_s:.3f}{' (each)' if r.restarted else ''}",
                f"{r.median_s:.4f}", f"{100 * r.spread:.0f}%",
                _fmt(r.speedup_vs_serial, ".2f", "x"),
                *([_fmt(r.speedup_vs_own_serial, ".2f", "x")] if several else []),
                _fmt(r.speedup_vs_own_1, ".2f", "x"), _fmt(r.efficiency, ".0%"),
            ])
        return cells

    def _table_notes(self) -> list[str]:
        notes = []
        if self.spans_interpreters:
            notes.append(f"vs {self.reference}@own: against {self.reference} under the row's own "
                         f"interpreter; vs {self.name_of(self.reference, self.default_label)}: "
                         "against the default interpreter's, so a slower single thread shows")
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
        cells = self._table_cells()
        text = format_table(cells, right=range(1, len(cells[0])))
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
        reference = self.name_of(self.reference, self.default_label)
        best = min(self.rows, key=lambda r: r.median_s)
        lines.append(f"Fastest for {kernel} here: {self._row_name(best)} with "
                     f"{workers_text(best.workers)}, {best.median_s:.4f} s, "
                     f"{_fmt(best.speedup_vs_serial, '.1f', 'x')} {reference}.")
        python_rows = [r for r in self.rows if r.impl == "python" and r.model != self.reference]
        if python_rows:
            top = min(python_rows, key=lambda r: r.median_s)
            if top.speedup_vs_serial is not None and top.speedup_vs_serial >= _HELPED:
                lines.append(f"Best with the pure-Python kernel: {self._row_name(top)} with "
                             f"{workers_text(top.workers)}, {top.speedup_vs_serial:.1f}x "
                             f"{reference}.")
            else:
                lines.append(f"No model ran the pure-Python kernel much faster than "
                             f"{reference} (best: {self._row_name(top)}, "
                             f"{_fmt(top.speedup_vs_serial, '.2f', 'x')}).")
        lines.extend(self._interpreter_lines())
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
            slowest[self._row_name(r)] = max(slowest.get(self._row_name(r), 0.0),
                                             r.startup_median_s)
        cheap = [name for name, seconds in slowest.items() if seconds < 0.01]
        text = (f"Start-up: {self._row_name(costly)} took {costly.startup_median_s:.3f} s to start "
                f"{workers_text(costly.workers)}, "
                f"{_fmt(_ratio(costly.startup_median_s, costly.median_s), '.1f', 'x')} the "
                "time of one run of the workload on them: worth paying only when workers "
                "are reused.")
        if cheap:
            text += f" Under 10 ms: {', '.join(cheap)}."
        return [text]

    def _gil_lines(self) -> list[str]:
        lines = []
        for info in self.models:
            rows = [r for r in self.rows_of(info.name, info.interpreter)
                    if r.workers > 1 and r.speedup_vs_own_1 is not None]
            if not info.shares_gil or info.max_workers == 1 or not rows:
                continue
            top = max(rows, key=lambda r: r.speedup_vs_own_1)
            helped = top.speedup_vs_own_1 >= _HELPED
            name = self.name_of(info.name, info.interpreter)
            if info.impl == "python":
                why = ("the GIL is enabled, so pure-Python threads take turns" if top.gil_enabled
                       else "the GIL is disabled in this build, so pure-Python threads can run "
                       "at once")
                outcome = "helped" if helped else "did not help"
                lines.append(f"{name}: threads {outcome} pure Python "
                             f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers); {why}.")
            else:
                lines.append(f"{name}: the compiled kernel releases the GIL; best "
                             f"{top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers.")
        return lines

    def _interpreter_lines(self) -> list[str]:
        """Per other interpreter: the single-thread cost (its reference time against the
        default's) and, where its GIL is disabled, what its pure-Python threads gained
        over its own reference, and the net of the two."""
        lines = []
        default = self.default_label
        base = self.rows_of(self.reference, default)[0]
        for other in self.interpreters[1:]:
            own = self.rows_of(self.reference, other.label)[0]
            cost = _ratio(own.median_s, base.median_s)
            text = (f"Single thread: {self.reference}@{other.label} (GIL "
                    f"{'enabled' if other.gil_enabled else 'disabled'}) took "
                    f"{_fmt(cost, '.2f', 'x')} the time of {self.reference}@{default}")
            threads = [r for r in self.rows if r.interpreter == other.label and r.impl == "python"
                       and r.workers > 1 and r.speedup_vs_own_serial is not None
                       and self.model(r.model, other.label).shares_gil]
            if other.gil_enabled or not threads:
                lines.append(text + ".")
                continue
            top = max(threads, key=lambda r: r.speedup_vs_own_serial)
            net = top.speedup_vs_serial
            pays = (f"the parallel gain outweighs the single-thread cost at "
                    f"{workers_text(top.workers)}" if net is not None and net >= 1.0 else
                    f"the parallel gain does not make up for the single-thread cost at "
                    f"{workers_text(top.workers)}")
            lines.append(f"{text}; against that cost, {top.model}@{other.label} ran "
                         f"{top.speedup_vs_own_serial:.2f}x as fast as {self.reference}@"
                         f"{other.label} with {workers_text(top.workers)}, so "
                         f"{_fmt(net, '.2f', 'x')} {self.reference}@{default} net: {pays}.")
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
            name = self.name_of(p.model, p.interpreter)
            if p.fit is None:
                cells.append([name, p.law, points, p.reason, *["-"] * len(PROJECT_AT)])
            else:
                cells.append([name, p.law, points,
                              f"{p.fit.describe_params()} (rms {p.fit.rms_error:.2f})",
                              *[f"{p.at(n):.1f}x" for n in PROJECT_AT]])
        return "\n".join(head + [format_table(cells, right={4, 5, 6})])

    def header(self) -> str:
        m = self.environment["machine"]
        first = (f"gilstudy compare: {self.workload.describe()}, median of {self.repeat} "
                 f"interleaved repeats")
        if not self.spans_interpreters:
            return (f"{first}\npython {m['python']} ({m['interpreter']}, GIL "
                    f"{'enabled' if m['gil_enabled'] else 'disabled'}), {m['cpu_model']}, "
                    f"{m['usable_cores']} usable cores; {self.idle.describe()}")
        lines = [f"{first}, the interpreters taking turns within each repeat"]
        for i in self.interpreters:
            im = i.environment["machine"]
            lines.append(f"@{i.label}: python {im['python']}, GIL "
                         f"{'enabled' if i.gil_enabled else 'disabled'}: {i.executable}"
                         f"{' (the default)' if i.is_default else ''}")
        lines.append(f"{m['cpu_model']}, {m['usable_cores']} usable cores; "
                     f"{self.idle.describe()}")
        return "\n".join(lines)

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
                         "models": list(dict.fromkeys(m.name for m in self.models)),
                         "reference": self.reference,
                         "pythons": [i.executable for i in self.interpreters[1:]]},
            "environment": {
                **{k: v for k, v in self.environment.items()},
                "idle_check": {"idle": idle.idle, "busy_cores": _finite(idle.busy_cores),
                               "waited_s": idle.waited_s, "measured": idle.measured,
                               "text": idle.describe()},
                "reference_run_s": self.reference_run_s,
                "interpreters": [{
                    "label": i.label, "default": i.is_default, "executable": i.executable,
                    "gil_enabled": i.gil_enabled, "reference_run_s": i.reference_run_s,
                    **i.environment,
                } for i in self.interpreters],
            },
            "models": [vars(m).copy() for m in self.models],
            "rows": [{
                "model": r.model, "interpreter": r.interpreter, "gil_enabled": r.gil_enabled,
                "impl": r.impl, "workers": r.workers,
                "oversubscribed": r.oversubscribed, "restarted_per_repeat": r.restarted,
                "startup_s": list(r.startup_s), "work_s": list(r.work_s),
                "median_s": r.median_s, "spread": r.spread,
                "speedup_vs_serial": r.speedup_vs_serial,
                "speedup_vs_own_serial": r.speedup_vs_own_serial,
                "speedup_vs_own_1": r.speedup_vs_own_1, "efficiency": r.efficiency,
            } for r in self.rows],
            "projections": [{
                "model": p.model, "interpreter": p.interpreter, "law": p.law,
                "points": [list(pt) for pt in p.points],
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
        """Write the PNG of gilstudy.compare.plot.plot() to ``path``; return the path.
        Raises ModuleNotFoundError if matplotlib is missing."""
        return write_plot(self, path)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
