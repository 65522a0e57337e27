"""The answer a `gilstudy compare` run gives first: which model to use for this work on this
machine, at how many workers, how much faster than the reference (serial-python) and how
sure; whether threads help pure Python here and why; the smallest item that pays off; what
to try next. It is chosen from the measured rows alone (gilstudy.compare.facts), so every
result has one, however it was made.

How sure: each model's speedup is shown with the range its repeats span (the reference's
median divided by the model's slowest and fastest repeat). Two models whose ranges overlap
are within each other's spread: the answer then says they tie and crowns neither."""

from dataclasses import dataclass

from gilstudy.compare.facts import ModelInfo, Row
from gilstudy.compare.workload import Work
from gilstudy.executor import executor_line

__all__ = ["Answer", "Standing", "ThreadsFinding", "choose", "HELPED"]

# A model "helped" when its best speedup over its own 1-worker run reaches this.
HELPED = 1.2


@dataclass(frozen=True)
class Standing:
    """One model's best row: its name (``model@label`` when several interpreters ran), the
    worker count, its speedup over the reference, and the range the repeats span
    (``low`` from its slowest repeat, ``high`` from its fastest)."""

    model: str
    workers: int
    speedup: float
    low: float
    high: float
    impl: str
    family: str
    dispatch_s: float | None
    is_serial: bool
    shares_gil: bool

    @property
    def spread(self) -> float:
        """(high - low) / speedup: how far apart the repeats put it, as a fraction."""
        return (self.high - self.low) / self.speedup

    def overlaps(self, other: "Standing") -> bool:
        """Whether the two ranges meet: neither is faster beyond the other's spread."""
        return self.low <= other.high and other.low <= self.high

    @property
    def min_item_s(self) -> float | None:
        """The item duration d from which the dispatch bound d / c reaches the worker
        count: shorter items leave workers waiting on the dispatcher. None for a model
        that hands over no items and for a serial baseline."""
        if self.is_serial or not self.dispatch_s:
            return None
        return self.workers * self.dispatch_s


@dataclass(frozen=True)
class ThreadsFinding:
    """What threads did for the Python implementation under the default interpreter: the
    best speedup of a GIL-sharing multi-worker model over its own 1-worker run, and that
    row's speedup over serial-python. They helped only when both reach HELPED: threads
    that scale from a slow 1-worker run yet stay slower than serial-python do not help."""

    model: str
    workers: int
    speedup_vs_own_1: float
    gil_enabled: bool
    helped: bool
    python_holds_gil: bool
    speedup_vs_serial: float | None = None


@dataclass(frozen=True)
class Answer:
    """The answer of one run (see the module docstring). ``model`` is the fastest model's
    name and ``ties`` the other models within its spread (empty when it wins outright).
    ``min_item_s`` is the smallest item that pays off for it (Standing.min_item_s),
    ``item_s`` this workload's serial seconds per item. ``python`` is the best model
    running the Python implementation (not the reference), ``threads`` what threads did
    for it. ``next_step`` is what to try next, in one sentence. ``code`` is free for a
    line of code to copy (None: no such line)."""

    best: Standing
    ties: tuple[Standing, ...]
    item_s: float
    python: Standing | None
    threads: ThreadsFinding | None
    next_step: str
    code: str | None = None

    @property
    def model(self) -> str:
        return self.best.model

    @property
    def workers(self) -> int:
        return self.best.workers

    @property
    def speedup_vs_serial(self) -> float:
        return self.best.speedup

    @property
    def spread(self) -> float:
        return self.best.spread

    @property
    def min_item_s(self) -> float | None:
        return self.best.min_item_s

    @property
    def is_tie(self) -> bool:
        return bool(self.ties)

    def to_dict(self) -> dict:
        """The ``answer`` object of the JSON document."""
        return {
            "model": self.model, "workers": self.workers,
            "speedup_vs_serial": self.speedup_vs_serial, "spread": self.spread,
            "range": [self.best.low, self.best.high],
            "ties": [t.model for t in self.ties],
            "tied": [{"model": t.model, "workers": t.workers, "speedup_vs_serial": t.speedup,
                      "range": [t.low, t.high]} for t in self.ties],
            "min_item_s": self.min_item_s, "item_s": self.item_s,
            "dispatch_s": self.best.dispatch_s,
            "python": None if self.python is None else {
                "model": self.python.model, "workers": self.python.workers,
                "speedup_vs_serial": self.python.speedup,
                "range": [self.python.low, self.python.high]},
            "threads": None if self.threads is None else {
                "model": self.threads.model, "workers": self.threads.workers,
                "speedup_vs_own_1": self.threads.speedup_vs_own_1,
                "gil_enabled": self.threads.gil_enabled, "helped": self.threads.helped},
            "next": self.next_step,
            "code": self.code,
        }


def _standings(rows: list[Row], infos: dict, reference_s: float, labelled: bool) -> list[Standing]:
    """Each model's fastest row (per interpreter), fastest first."""
    best: dict[tuple[str, str], Row] = {}
    for r in rows:
        key = (r.model, r.interpreter)
        if r.median_s > 0 and (key not in best or r.median_s < best[key].median_s):
            best[key] = r
    found = []
    for (model, label), r in best.items():
        info = infos[(model, label)]
        found.append(Standing(
            model=f"{model}@{label}" if labelled else model, workers=r.workers,
            speedup=reference_s / r.median_s, low=reference_s / max(r.work_s),
            high=reference_s / min(r.work_s), impl=r.impl, family=info.family,
            dispatch_s=r.dispatch_s, is_serial=info.max_workers == 1,
            shares_gil=info.shares_gil))
    return sorted(found, key=lambda s: -s.speedup)


def _threads(rows: list[Row], models: list[ModelInfo], default: str,
             workload: Work) -> ThreadsFinding | None:
    found = None
    for info in models:
        if (info.interpreter != default or info.impl != "python" or not info.shares_gil
                or info.max_workers == 1):
            continue
        for r in rows:
            if (r.model == info.name and r.interpreter == default and r.workers > 1
                    and r.speedup_vs_own_1 is not None
                    and (found is None or r.speedup_vs_own_1 > found.speedup_vs_own_1)):
                helped = r.speedup_vs_own_1 >= HELPED and (
                    r.speedup_vs_serial is None or r.speedup_vs_serial >= HELPED)
                found = ThreadsFinding(info.name, r.workers, r.speedup_vs_own_1,
                                       r.gil_enabled, helped, workload.python_holds_gil,
                                       r.speedup_vs_serial)
    return found


def _seconds(seconds: float) -> str:
    """'12 us', '4.6 ms', '1.23 s', at three significant digits."""
    seconds = float(f"{seconds:.3g}")
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _next_step(best: Standing, standings: list[Standing], item_s: float,
               python: Standing | None, workload: Work) -> str:
    """What to try next, from what won and how big the items are."""
    parallel = [s for s in standings if not s.is_serial]
    if best.is_serial:
        hopeful = [s for s in parallel if s.min_item_s]
        if hopeful:
            cheapest = min(hopeful, key=lambda s: s.dispatch_s)
            if item_s < cheapest.min_item_s:
                return (f"the items are too small: each holds {_seconds(item_s)} of work, "
                        f"and even {cheapest.model} spends {_seconds(cheapest.dispatch_s)} "
                        f"handing one over; cut the work into bigger items, "
                        f"{_seconds(cheapest.min_item_s)} or more each")
        return ("no parallel model beat the serial run: give each worker more work, and "
                "check that nothing else was using the cores")
    if best.min_item_s and item_s < best.min_item_s:
        return (f"the items are small for {best.model} ({_seconds(item_s)} of work against "
                f"{_seconds(best.dispatch_s)} to hand one over): bigger items, "
                f"{_seconds(best.min_item_s)} or more each, would keep its workers busy")
    if best.impl == "python" and best.shares_gil:
        return (f"threads ran {workload.impl_words('python')} at once because this "
                "interpreter's GIL is disabled; under a GIL, use processes instead")
    if best.impl == "python":
        held = ("holds the GIL, so processes carry it" if workload.python_holds_gil
                else "ran fastest in processes")
        return (f"{workload.impl_words('python')} {held} (coprocesses or a pool); compiling "
                "the hot loop so that it releases the GIL (Cython nogil) would let threads "
                "use the cores too")
    if python is not None:
        return (f"compiled code that releases the GIL wins; without compiling, "
                f"{python.model} with {python.workers} worker"
                f"{'' if python.workers == 1 else 's'} is the best for "
                f"{workload.impl_words('python')} ({python.speedup:.2f}x)")
    return "compiled code that releases the GIL wins: keep the hot loop in it"


def choose(rows: list[Row], models: list[ModelInfo], reference: str, default: str,
           workload: Work) -> Answer:
    """The Answer for measured ``rows`` (with speedups) of ``models``; ``reference`` is the
    reference model's name and ``default`` the default interpreter's label (the
    reference's 1-worker row under it divides every speedup). Raises ValueError when
    there is no such row."""
    base = next((r for r in rows if r.model == reference and r.interpreter == default
                 and r.workers == 1), None)
    if base is None or base.median_s <= 0:
        raise ValueError(f"answer: no 1-worker row of the reference {reference!r}")
    reference_s = base.median_s
    labelled = len({r.interpreter for r in rows}) > 1
    infos = {(m.name, m.interpreter): m for m in models}
    standings = _standings(rows, infos, reference_s, labelled)
    best = standings[0]
    ties = tuple(s for s in standings[1:] if s.overlaps(best))
    name = f"{reference}@{default}" if labelled else reference
    python = next((s for s in standings if s.impl == "python" and s.model != name), None)
    item_s = reference_s / max(workload.items_count, 1)
    return Answer(best=best, ties=ties, item_s=item_s, python=python,
                  threads=_threads(rows, models, default, workload),
                  next_step=_next_step(best, standings, item_s, python, workload),
                  code=_code(best, python))


def _code(best: Standing, python: Standing | None) -> str | None:
    """The gilstudy.Executor line that runs work the way ``best`` did; where no Executor
    does (serial, prange: one call), the line for the best model of the pure-Python code,
    marked so; None when neither has one (or gilstudy.executor does not know the model)."""
    line = _executor_line(best)
    if line is None and not best.is_serial and python is not None and not python.is_serial:
        line = _executor_line(python)
        if line is not None:
            line += f"  # for pure-Python code, as {python.model}"
    return line


def _executor_line(standing: Standing) -> str | None:
    try:
        return executor_line(standing.model, standing.workers)
    except ValueError:
        return None
