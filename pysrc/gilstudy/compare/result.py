"""The result of a `gilstudy compare` run: the data (CompareResult: the workload, the
models, the measured rows, the environment) and the questions asked of it (the rows of a
model, how outside load went, the answer). How it is shown lives elsewhere, as functions
over a CompareResult: report (the text), document (the JSON), plot (the figure), projection
(what it bounds past this machine)."""

import datetime
import functools
import math
from dataclasses import dataclass, field

from gilstudy.compare.answer import Answer, choose
from gilstudy.compare.facts import Interpreter, ModelInfo, Row
from gilstudy.compare.measure import Timing
from gilstudy.compare.workload import Work
from gilstudy.machine import IdleCheck

__all__ = ["CompareResult"]


@dataclass
class CompareResult:
    """Everything one `gilstudy compare` run measured, and the questions it answers from
    that alone. Build it with gilstudy.compare.run(); show it with the functions of
    gilstudy.compare.report (text), gilstudy.compare.document (JSON) and
    gilstudy.compare.plot (a figure), which all take it as their one argument.

    ``expected`` is the workload's answer (the reference model's, which every model
    matched); ``answer`` (a gilstudy.compare.answer.Answer) is which model to use.

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
    expected: object
    reference_run_s: float
    idle: IdleCheck
    environment: dict
    interpreters: list[Interpreter]
    timing: Timing = field(default_factory=Timing)
    footprints: list = field(default_factory=list)
    footprint_kernel: str | None = None
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))

    @functools.cached_property
    def answer(self) -> Answer:
        """Which model to use, at how many workers, how sure, and what next
        (gilstudy.compare.answer.choose())."""
        return choose(self.rows, self.models, self.reference, self.default_label,
                      self.workload)

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

    def row_name(self, row: Row) -> str:
        """How the report names ``row``'s model (name_of())."""
        return self.name_of(row.model, row.interpreter)

    @property
    def usable_cores(self) -> int:
        return self.environment["machine"]["usable_cores"]

    @property
    def unavailable(self) -> dict[str, str]:
        """Why each model that could not run did not, by its name in the report."""
        return {self.name_of(m.name, m.interpreter): m.reason for m in self.models
                if not m.available}

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
