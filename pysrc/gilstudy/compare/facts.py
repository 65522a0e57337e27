"""The measured facts of a `gilstudy compare` run, with no way of showing them: a model's
registry facts (ModelInfo), one model at one worker count (Row), and an interpreter the
models ran under (Interpreter). The result, its answer and every report build on these."""

from dataclasses import dataclass, field

from gilstudy.compare.measure import Repeat
from gilstudy.timing import Samples

__all__ = ["ModelInfo", "Row", "Interpreter", "workers_text", "fill_speedups"]


def workers_text(n: int) -> str:
    """'1 worker', '4 workers'."""
    return f"{n} worker{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class ModelInfo:
    """What the report needs to know of a model: its registry entry's facts (``family``
    groups it in the plot and the answer, ``quick`` says it is in the default set), and
    whether it could run here (``reason`` says why not)."""

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
    family: str = "other"
    quick: bool = False


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


def fill_speedups(rows: list[Row], reference: str, default: str) -> None:
    """Set every row's speedups: over ``reference``'s 1-worker row under the ``default``
    interpreter, over the reference under the row's own interpreter, and over the row's
    model at 1 worker (None where there is no such row)."""
    by_key = {(r.interpreter, r.model, r.workers): r for r in rows}
    reference_s = by_key[(default, reference, 1)].median_s
    for r in rows:
        median = r.median_s
        r.speedup_vs_serial = None if median <= 0 else reference_s / median
        own_serial = by_key[(r.interpreter, reference, 1)]
        r.speedup_vs_own_serial = None if median <= 0 else own_serial.median_s / median
        own = by_key.get((r.interpreter, r.model, 1))
        r.speedup_vs_own_1 = None if own is None or median <= 0 else own.median_s / median
