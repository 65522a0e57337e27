"""What `gilstudy compare` found, and every way of showing it: the CompareResult the runner
returns, its table, a plain-language verdict, scaling projections, the JSON document
(schema below) and the plot. A model's facts come from its registry entry (ModelInfo),
never its name; with several interpreters each model shows once per interpreter.
"""

import datetime
import json
import math
from dataclasses import dataclass, field

from gilstudy._table import format_table
from gilstudy.compare import projection, worker_costs
from gilstudy.compare.fit import PROJECT_AT
from gilstudy.compare.measure import Repeat, Timing
from gilstudy.compare.plot import plot as write_plot
from gilstudy.compare.projection import Ceiling, Projection
from gilstudy.compare.workload import Work
from gilstudy.machine import IdleCheck
from gilstudy.timing import Samples

__all__ = ["SCHEMA_VERSION", "ModelInfo", "Row", "Projection", "Ceiling", "Interpreter",
           "CompareResult", "markdown_table", "unavailable_notes", "workers_text"]

# Version of the JSON document written by CompareResult.to_json(); raised whenever a key
# changes meaning or goes away (adding keys does not change it).
#
# Schema 3 (schema 2 timed one pass per repeat and described only kernels; now a repeat is
# passes until --min-time, sampled for outside load and re-run when disturbed, the workload
# may be a user's function, and projections past the cores are bounds unless 3 or more worker
# counts were measured), every key always present (null where a figure does not exist):
#   schema_version  int, 3
#   tool            "gilstudy compare";  gilstudy_version  str;  created  ISO 8601 UTC time
#   workload        {kind "kernel", name, size, size_means, items, whole_args [..], answer}
#                   or {kind "function", name, function, nogil|null, inputs|null (MODULE:
#                   NAME), items, answer}: answer is the reference model's: a number, for an
#                   image {shape, dtype, sum, sha256}, for a function {results, sha256}
#                   (sha256: the first 16 hex digits)
#   settings        {workers [int], repeat int, models [registry names asked for], reference
#                   str, pythons [the other interpreters' paths, in order], timing
#                   {min_time_s, max_outside_cores|null (never re-run), reruns}}
#   environment     {machine: gilstudy.machine.describe(), build: gilstudy.kernels.
#                   build_info() (Cython version, compiler, cflags, openmp, ...),
#                   versions {python, numpy, cython, joblib|null}: all three of the default
#                   interpreter (the one that ran `gilstudy compare`); idle_check {idle,
#                   busy_cores|null, waited_s, measured, text} (before timing), outside_load
#                   {repeats, disturbed (repeats whose first try was disturbed), reruns (tries
#                   run again), stayed_disturbed (kept although disturbed), max_outside_cores
#                   |null, text} (during timing), reference_run_s (default interpreter),
#                   interpreters [{label ("3.11", "3.13t", "3.11#2" for a second 3.11),
#                   default bool, executable, gil_enabled (as its runs ended),
#                   reference_run_s, machine, build, versions}], default first}
#   models          [{name (as rows name it: "threads-nogil" for a function's nogil twin),
#                   registered_as (its registry name), impl, summary, available,
#                   reason|null, reusable, max_workers|null, shares_gil, interpreter}] for
#                   every model asked for under every interpreter, runnable or not
#   rows            [{model, interpreter, gil_enabled, impl, workers, oversubscribed,
#                   restarted_per_repeat, startup_s [s per start], dispatch_s|null (s per
#                   probe item), work_s [s per pass, one per repeat], passes [per repeat],
#                   repeats [{pass_s [s of every pass], outside_cores|null, tries, disturbed}],
#                   set_aside [the disturbed tries run again, same keys], median_s, spread,
#                   speedup_vs_serial (against the default interpreter's reference),
#                   speedup_vs_own_serial (against the reference under the row's own
#                   interpreter), speedup_vs_own_1|null, efficiency|null}]
#   ceilings        [{model, interpreter, workers, dispatch_s|null, item_s|null, bound|null
#                   (d/c), at {"4","16","64": min(cores, bound)}}]
#   projections     [{model, interpreter, law "amdahl"|"usl", points [[workers, speedup vs
#                   own 1 worker]], params {s}|{a, b}|null, rms_error|null, projected {"4",
#                   "16","64": speedup}|null, reason|null (why there is no fit)}]
#   footprints      [{kind "thread"|"subinterpreter"|"coprocess", interpreter (label),
#                   workers, startup_s|null, startup_per_worker_s|null, rss_bytes|null,
#                   pss_bytes|null (per worker), unavailable|null (why not)}]: what a worker
#                   costs before any work (gilstudy.footprint); [] when not measured
#   footprint_kernel  the kernel those workers ran, or null
#   verdict         [sentences]
SCHEMA_VERSION = 3

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
    registered_as: str


@dataclass
class Row:
    """One model at one worker count under one interpreter (its label, and whether its
    GIL was enabled as the runs began): raw seconds and the figures derived from them.
    ``repeats`` are the timed repeats kept (each: every pass's seconds and the outside
    load), ``set_aside`` the disturbed tries that were run again, ``dispatch_s`` the
    seconds per item that do no work (None for a model that hands over no items).
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
    repeats: list[Repeat] = field(default_factory=list)
    set_aside: list[Repeat] = field(default_factory=list)
    dispatch_s: float | None = None
    speedup_vs_serial: float | None = None
    speedup_vs_own_serial: float | None = None
    speedup_vs_own_1: float | None = None

    @property
    def work_s(self) -> list[float]:
        """Seconds per pass over the whole workload, one per repeat."""
        return [r.per_pass_s for r in self.repeats]

    @property
    def passes(self) -> list[int]:
        return [r.passes for r in self.repeats]

    @property
    def reruns(self) -> int:
        """Tries run again because outside load disturbed them."""
        return sum(r.tries - 1 for r in self.repeats)

    @property
    def stayed_disturbed(self) -> int:
        """Repeats kept although every try was disturbed."""
        return sum(r.disturbed for r in self.repeats)

    def to_wire(self) -> dict:
        """The measured facts, as JSON, for gilstudy compare --python's child to send."""
        return {"model": self.model, "impl": self.impl, "workers": self.workers,
                "oversubscribed": self.oversubscribed, "restarted": self.restarted,
                "gil_enabled": self.gil_enabled, "startup_s": list(self.startup_s),
                "repeats": [r.to_dict() for r in self.repeats],
                "set_aside": [r.to_dict() for r in self.set_aside],
                "dispatch_s": self.dispatch_s}

    @classmethod
    def from_wire(cls, data: dict, interpreter: str) -> "Row":
        return cls(**{**data, "repeats": [Repeat.from_dict(r) for r in data["repeats"]],
                      "set_aside": [Repeat.from_dict(r) for r in data["set_aside"]]},
                   interpreter=interpreter)

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


def unavailable_notes(unavailable: dict[str, str]) -> list[str]:
    """'unavailable: NAME, NAME: REASON', one note per reason, the models in their order."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in unavailable.items():
        by_reason.setdefault(reason, []).append(name)
    return [f"unavailable: {', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def markdown_table(cells: list[list[str]], notes: list[str]) -> str:
    """``cells`` (the first row the header) as a markdown table, the first column
    left-aligned and the others right-aligned, then ``notes`` as a list."""
    lines = ["| " + " | ".join(cells[0]) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(cells[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(c.replace("*", "\\*") for c in row) + " |" for row in cells[1:]]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def _passes_text(passes: list[int]) -> str:
    """'12', or '11-13' when the repeats took different numbers of passes."""
    low, high = min(passes), max(passes)
    return f"{low}" if low == high else f"{low}-{high}"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


@dataclass
class CompareResult:
    """Everything one `gilstudy compare` run measured. Build it with
    gilstudy.compare.run(); show it with table(), to_markdown(), verdict(),
    projections(), report(); save it with to_json() or gilstudy.compare.plot().

    ``footprints`` (gilstudy.footprint.Footprint, for each interpreter and kind) are
    the start-up and memory per worker, measured after the timing, running
    ``footprint_kernel``; empty when not asked for.

    ``interpreters`` lists the interpreters the models ran under, the default first;
    ``environment`` and ``reference_run_s`` are the default interpreter's. ``models`` and
    ``rows`` hold each model once per interpreter (ModelInfo.interpreter, Row.interpreter).
    """

    workload: Work
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
    timing: Timing = field(default_factory=Timing)
    footprints: list = field(default_factory=list)
    footprint_kernel: str | None = None
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
        """Amdahl and USL fits of each multi-worker model, where at least three worker
        counts were measured within the usable cores, else the reason
        (gilstudy.compare.projection)."""
        return projection.projections(self)

    def ceilings(self) -> list[Ceiling]:
        """Each multi-worker model's speedup bound from its dispatch cost per item
        (gilstudy.compare.projection)."""
        return projection.ceilings(self)

    def outside_load(self) -> dict:
        """How the outside load sampled during the timed repeats went: counts of repeats,
        of those disturbed at their first try, of tries run again, and of repeats kept
        although still disturbed."""
        repeats = [r for row in self.rows for r in row.repeats]
        counts = {"repeats": len(repeats),
                  "disturbed": sum(r.tries > 1 or r.disturbed for r in repeats),
                  "reruns": sum(r.tries - 1 for r in repeats),
                  "stayed_disturbed": sum(r.disturbed for r in repeats)}
        limit = self.timing.max_outside_cores
        if math.isinf(limit):
            text = "outside load was sampled during every repeat; none was run again"
        elif not counts["disturbed"]:
            text = (f"outside load stayed under {limit:g} cores during all "
                    f"{counts['repeats']} timed repeats")
        else:
            text = (f"outside load: {counts['disturbed']} of {counts['repeats']} timed repeats "
                    f"were disturbed (other processes used more than {limit:g} cores) and run "
                    f"again, {counts['reruns']} tries in all")
            if counts["stayed_disturbed"]:
                text += (f"; {counts['stayed_disturbed']} stayed disturbed after "
                         f"{self.timing.reruns} re-runs and kept their least disturbed try "
                         "(marked !)")
        return {**counts, "max_outside_cores": None if math.isinf(limit) else limit,
                "text": text}

    # ---- text -----------------------------------------------------------------------

    def _table_cells(self) -> list[list[str]]:
        # With one interpreter "vs its own serial" would repeat "vs serial", so it is left out.
        several = self.spans_interpreters
        header = ["model", "workers", "start-up s", "passes", "median s", "spread",
                  f"vs {self.name_of(self.reference, self.default_label)}",
                  *([f"vs {self.reference}@own"] if several else []),
                  "vs own 1 worker", "efficiency"]
        cells = [header]
        for r in self.rows:
            cells.append([
                self._row_name(r), f"{r.workers}{'*' if r.oversubscribed else ''}",
                f"{r.startup_median_s:.3f}{' (each)' if r.restarted else ''}",
                _passes_text(r.passes), f"{r.median_s:.4f}",
                f"{100 * r.spread:.0f}%{'!' if r.stayed_disturbed else ''}",
                _fmt(r.speedup_vs_serial, ".2f", "x"),
                *([_fmt(r.speedup_vs_own_serial, ".2f", "x")] if several else []),
                _fmt(r.speedup_vs_own_1, ".2f", "x"), _fmt(r.efficiency, ".0%"),
            ])
        return cells

    def _table_notes(self) -> list[str]:
        notes = [f"median s: seconds per pass over the whole workload, the median of "
                 f"{self.repeat} repeats; each repeat ran passes back to back on the started "
                 f"workers until it lasted at least {self.timing.min_time_s:g} s (passes: how "
                 "many per repeat)", self.outside_load()["text"]]
        if self.spans_interpreters:
            notes.append(f"vs {self.reference}@own: against {self.reference} under the row's own "
                         f"interpreter; vs {self.name_of(self.reference, self.default_label)}: "
                         "against the default interpreter's, so a slower single thread shows")
        if any(r.oversubscribed for r in self.rows):
            notes.append(f"* more workers than the {self.usable_cores} usable cores "
                         "(oversubscribed)")
        if any(r.restarted for r in self.rows):
            notes.append("(each): the model's workers were started and stopped around every "
                         "repeat (they cannot be reused, or use CPU while idle); the median "
                         "start-up is shown")
        notes.extend(unavailable_notes(self.unavailable))
        return notes

    def table(self) -> str:
        """The results as an aligned plain-text table, with its footnotes."""
        cells = self._table_cells()
        text = format_table(cells, right=range(1, len(cells[0])))
        return "\n".join([text, *self._table_notes()])

    def to_markdown(self) -> str:
        """The results as a markdown table, with its footnotes."""
        return markdown_table(self._table_cells(), self._table_notes())

    def verdict(self) -> str:
        """A few plain sentences: who wins here, what start-up costs, whether threads
        helped under this interpreter's GIL."""
        return "\n".join(self._verdict_lines())

    def _verdict_lines(self) -> list[str]:
        lines = []
        reference = self.name_of(self.reference, self.default_label)
        best = min(self.rows, key=lambda r: r.median_s)
        lines.append(f"Fastest for {self.workload.title} here: {self._row_name(best)} with "
                     f"{workers_text(best.workers)}, {best.median_s:.4f} s, "
                     f"{_fmt(best.speedup_vs_serial, '.1f', 'x')} {reference}.")
        python_rows = [r for r in self.rows if r.impl == "python" and r.model != self.reference]
        if python_rows:
            top = min(python_rows, key=lambda r: r.median_s)
            if top.speedup_vs_serial is not None and top.speedup_vs_serial >= _HELPED:
                lines.append(f"Best with {self.workload.impl_words('python')}: "
                             f"{self._row_name(top)} with "
                             f"{workers_text(top.workers)}, {top.speedup_vs_serial:.1f}x "
                             f"{reference}.")
            else:
                lines.append(f"No model ran {self.workload.impl_words('python')} much "
                             "faster than "
                             f"{reference} (best: {self._row_name(top)}, "
                             f"{_fmt(top.speedup_vs_serial, '.2f', 'x')}).")
        lines.extend(self._interpreter_lines())
        lines.extend(self._startup_lines())
        costs = worker_costs.summary_line(self.footprints)
        if costs:
            lines.append(costs)
        lines.extend(self._gil_lines())
        if not self.idle.idle:
            lines.append(f"Caution: {self.idle.describe()} before timing; other load makes "
                         "every parallel figure look worse than it is.")
        if self.outside_load()["stayed_disturbed"]:
            lines.append("Caution: some repeats stayed disturbed by other processes (marked ! "
                         "in the table); their rows may look slower than they are.")
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
            outcome = "helped" if helped else "did not help"
            if info.impl == "python" and self.workload.python_holds_gil:
                if not top.gil_enabled:
                    why = ("the GIL is disabled in this build, so pure-Python threads can run "
                           "at once")
                elif helped:  # under a GIL that can only be noise in the 1-worker time
                    why = ("yet the GIL is enabled, so pure-Python threads take turns: the "
                           "1-worker run was slowed by something else, such as outside load")
                else:
                    why = "the GIL is enabled, so pure-Python threads take turns"
                lines.append(f"{name}: threads {outcome} pure Python "
                             f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers); {why}.")
            elif info.impl == "python":
                lines.append(f"{name}: threads {outcome} {self.workload.impl_words('python')} "
                             f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                             f"{top.workers} workers), with the GIL "
                             f"{'enabled' if top.gil_enabled else 'disabled'}.")
            else:
                lines.append(f"{name}: {self.workload.impl_words(info.impl)} releases the "
                             "GIL; best "
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
        """What the measurements say past this machine, marked as a projection: each
        model's ceiling from its dispatch cost, and the fitted laws only where at least
        three worker counts were measured within the usable cores."""
        return projection.projection_text(self)

    def header(self) -> str:
        m = self.environment["machine"]
        first = (f"gilstudy compare: {self.workload.describe()}, median of {self.repeat} "
                 f"interleaved repeats of at least {self.timing.min_time_s:g} s each")
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

    def footprint_table(self) -> str | None:
        """Start-up time and resident memory per worker for thread, subinterpreter and
        coprocess, side by side, under each interpreter; None when not measured."""
        if not self.footprints:
            return None
        return worker_costs.table_text(self.footprints, self.footprint_kernel)

    def report(self, markdown: bool = False) -> str:
        """Header, table, the start-up and memory table, verdict and projections: what the
        CLI prints."""
        parts = [self.header(), self.to_markdown() if markdown else self.table()]
        costs = self.footprint_table()
        if costs:
            parts.append(f"```\n{costs}\n```" if markdown else costs)
        parts.append("Verdict:\n" + "\n".join(f"- {line}" for line in self._verdict_lines()))
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
            "workload": self.workload.to_dict(self.answer),
            "settings": {"workers": list(self.workers), "repeat": self.repeat,
                         "models": list(dict.fromkeys(m.registered_as for m in self.models)),
                         "reference": self.reference,
                         "pythons": [i.executable for i in self.interpreters[1:]],
                         "timing": self.timing.to_dict()},
            "environment": {
                **{k: v for k, v in self.environment.items()},
                "idle_check": {"idle": idle.idle, "busy_cores": _finite(idle.busy_cores),
                               "waited_s": idle.waited_s, "measured": idle.measured,
                               "text": idle.describe()},
                "outside_load": self.outside_load(),
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
                "startup_s": list(r.startup_s), "dispatch_s": r.dispatch_s,
                "work_s": r.work_s, "passes": r.passes,
                "repeats": [repeat.to_dict() for repeat in r.repeats],
                "set_aside": [repeat.to_dict() for repeat in r.set_aside],
                "median_s": r.median_s, "spread": r.spread,
                "speedup_vs_serial": r.speedup_vs_serial,
                "speedup_vs_own_serial": r.speedup_vs_own_serial,
                "speedup_vs_own_1": r.speedup_vs_own_1, "efficiency": r.efficiency,
            } for r in self.rows],
            "ceilings": [{
                "model": c.model, "interpreter": c.interpreter, "workers": c.workers,
                "dispatch_s": c.dispatch_s, "item_s": c.item_s, "bound": c.bound,
                "at": {str(n): c.at(n) for n in PROJECT_AT},
            } for c in self.ceilings()],
            "projections": [{
                "model": p.model, "interpreter": p.interpreter, "law": p.law,
                "points": [list(pt) for pt in p.points],
                "params": None if p.fit is None else dict(p.fit.params),
                "rms_error": None if p.fit is None else p.fit.rms_error,
                "projected": None if p.fit is None else {str(n): p.at(n) for n in PROJECT_AT},
                "reason": p.reason,
            } for p in self.projections()],
            "footprints": worker_costs.to_dicts(self.footprints),
            "footprint_kernel": self.footprint_kernel,
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
