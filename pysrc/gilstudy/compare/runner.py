# The compare runner: one workload in every selected model at every worker count, timed
# interleaved on already-started workers, every answer checked against the reference
# model's. It only goes through the registry's entries; it never looks at a model's name
# except the reference's, which the caller chooses.

import sys
from typing import Callable, Iterable

import numpy as np

from gilstudy import kernels, machine
from gilstudy.compare import models as registry
from gilstudy.compare.report import CompareResult, ModelInfo, Row, workers_text
from gilstudy.compare.workload import Workload, answer_summary, make_workload, same_answer
from gilstudy.timing import time_call

__all__ = ["run", "default_workers", "check_workers", "REFERENCE", "environment"]

# The model whose answer every other model must match and whose time the speedups divide.
REFERENCE = "serial-python"

# progress(done, total, what): called after each start-up and each timed run.
Progress = Callable[[int, int, str], None]


def default_workers(cores: int | None = None) -> list[int]:
    """1, 2, 4 ... powers of two below ``cores`` (default: the usable cores), the usable
    cores themselves, and one oversubscribed count at twice that.

    >>> default_workers(2), default_workers(6)
    ([1, 2, 4], [1, 2, 4, 6, 12])
    """
    cores = machine.usable_cores() if cores is None else cores
    counts = {1, cores, 2 * cores}
    n = 2
    while n < cores:
        counts.add(n)
        n *= 2
    return sorted(counts)


def check_workers(workers: Iterable[int]) -> list[int]:
    """Sorted distinct worker counts; ValueError unless each is an int >= 1."""
    counts = list(workers)
    if not counts:
        raise ValueError("workers: give at least one worker count")
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"workers: each count must be an int, got {type(n).__name__} ({n!r})")
        if n < 1:
            raise ValueError(f"workers: each count must be >= 1, got {n}")
    return sorted({int(n) for n in counts})


def environment() -> dict:
    """Machine, interpreter and build facts stored with every result."""
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    build = kernels.build_info()
    versions["cython"] = build.get("cython_version")
    joblib = sys.modules.get("joblib")
    versions["joblib"] = getattr(joblib, "__version__", None)
    return {"machine": machine.describe(), "build": build, "versions": versions}


def _info(model: registry.Model) -> ModelInfo:
    reason = model.unavailable_reason()
    return ModelInfo(name=model.name, impl=model.impl, summary=model.summary,
                     available=reason is None, reason=reason, reusable=model.reusable,
                     max_workers=model.max_workers, shares_gil=model.shares_gil)


def _failed(model: registry.Model, workers: int, what: str, exc: Exception) -> RuntimeError:
    return RuntimeError(f"{model.name} with {workers_text(workers)}: {what} failed: "
                        f"{type(exc).__name__}: {exc}")


def _close_all(handles: dict, workers: int, quietly: bool) -> None:
    """Stop every started model, last started first. An error while stopping is raised
    (after all are stopped) unless ``quietly``: then another error is already on its way
    and is the one to report."""
    first_error = None
    for name, handle in reversed(list(handles.items())):
        try:
            handle.close()
        except Exception as exc:
            if first_error is None:
                first_error = RuntimeError(f"{name} with {workers_text(workers)}: stopping its "
                                           f"workers failed: {type(exc).__name__}: {exc}")
                first_error.__cause__ = exc
    handles.clear()
    if first_error is not None and not quietly:
        raise first_error


class _Round:
    """The models of one worker count, timed together: started, run interleaved
    ``repeat`` times, stopped. Each answer is checked against ``expected``."""

    def __init__(self, workers: int, chosen: list[registry.Model], workload: Workload,
                 expected, reference: str, patience_s: float, cores: int, step: Callable[[str], None]):
        self.workers = workers
        self.models = chosen
        self.workload = workload
        self.expected = expected
        self.reference = reference
        self.patience_s = patience_s
        self.step = step
        self.rows = {m.name: Row(model=m.name, impl=m.impl, workers=workers,
                                 oversubscribed=workers > cores, restarted=not m.reusable)
                     for m in chosen}

    def _start(self, model: registry.Model):
        try:
            seconds, handle = time_call(lambda: model.launch(self.workload, self.workers))
        except Exception as exc:
            raise _failed(model, self.workers, "starting its workers", exc) from exc
        self.rows[model.name].startup_s.append(seconds)
        self.step(f"{model.name} w{self.workers} start")
        return handle

    def _run_once(self, model: registry.Model, handle, repeat_index: int) -> None:
        try:
            seconds, answer = time_call(lambda: handle.run(self.workload, self.patience_s))
        except Exception as exc:
            raise _failed(model, self.workers, f"repeat {repeat_index + 1}", exc) from exc
        if not same_answer(answer, self.expected):
            raise RuntimeError(
                f"{model.name} with {workers_text(self.workers)} computed a wrong answer for "
                f"{self.workload.describe()} (repeat {repeat_index + 1}): got "
                f"{answer_summary(answer)!r}, {self.reference} got "
                f"{answer_summary(self.expected)!r}")
        self.rows[model.name].work_s.append(seconds)
        self.step(f"{model.name} w{self.workers}")

    def time(self, repeat: int) -> list[Row]:
        handles: dict = {}
        try:
            for model in self.models:
                if model.reusable:
                    handles[model.name] = self._start(model)
            for repeat_index in range(repeat):
                for model in self.models:
                    if model.reusable:
                        self._run_once(model, handles[model.name], repeat_index)
                        continue
                    handles[model.name] = self._start(model)
                    self._run_once(model, handles[model.name], repeat_index)
                    handles.pop(model.name).close()
        except BaseException:
            _close_all(handles, self.workers, quietly=True)
            raise
        _close_all(handles, self.workers, quietly=False)
        return list(self.rows.values())


def _speedups(rows: list[Row], reference: str) -> None:
    by_key = {(r.model, r.workers): r for r in rows}
    reference_s = by_key[(reference, 1)].median_s
    for r in rows:
        median = r.median_s
        r.speedup_vs_serial = None if median <= 0 else reference_s / median
        own = by_key.get((r.model, 1))
        r.speedup_vs_own_1 = None if own is None or median <= 0 else own.median_s / median


def run(kernel: str = "count_primes", size: int | None = None, items: int | None = None,
        workers: Iterable[int] | None = None, models: str | Iterable[str] | None = None,
        repeat: int = 5, progress: Progress | None = None, idle_timeout_s: float = 30.0,
        reference: str = REFERENCE) -> CompareResult:
    """Run ``kernel`` over ``size`` in ``items`` work items in every selected model at every
    worker count; return the CompareResult.

    ``size`` and ``items`` default to the kernel's default size and 64 items; ``workers``
    to default_workers(); ``models`` (names or glob patterns, comma-separated or a list) to
    every registered model. The reference model always runs, at 1 worker: its answer is
    the one every model must give and its time the one speedups divide. Models that cannot
    run here are reported with the reason, not run.

    Before timing it waits up to ``idle_timeout_s`` for idle CPUs and records whether they
    were. Then, for each worker count, it starts every model's workers (timed apart as the
    start-up) and runs the models interleaved, ``repeat`` rounds; the median of the rounds
    is the figure, because one burst of outside load moves a mean but not a median.

    Raises UnknownKernelError, TypeError, ValueError or OverflowError for bad arguments,
    before anything runs; RuntimeError when a model fails or computes a different answer
    (with the model's own error as ``__cause__``). Every worker is stopped either way.

    >>> result = run("count_primes", size=2000, items=4, workers=[1], repeat=1,
    ...              models="serial-*", idle_timeout_s=0)
    >>> [row.model for row in result.rows]
    ['serial-python', 'serial-cython']
    """
    workload = make_workload(kernel, size, items)
    counts = default_workers() if workers is None else check_workers(workers)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    baseline = registry.get(reference)
    chosen = registry.select(models)
    if baseline not in chosen:
        chosen.insert(0, baseline)
    infos = [_info(m) for m in chosen]
    runnable = [m for m, info in zip(chosen, infos) if info.available]
    if baseline not in runnable:
        raise RuntimeError(f"the reference model {reference} cannot run here: "
                           f"{baseline.unavailable_reason()}")

    rounds: dict[int, list[registry.Model]] = {}
    for model in runnable:
        for n in model.worker_counts(counts):
            rounds.setdefault(n, []).append(model)
    total = 1 + sum(len(ms) * repeat + sum(1 for m in ms if m.reusable) for ms in rounds.values())
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    if progress is not None:
        progress(0, total, "waiting for idle CPUs")
    idle = machine.wait_for_idle_cpus(timeout_s=idle_timeout_s)
    env = environment()
    # One untimed run of the reference gives the answer to check (and warms caches).
    handle = baseline.launch(workload, 1)
    try:
        reference_run_s, expected = time_call(lambda: handle.run(workload, float("inf")))
    finally:
        handle.close()
    step(f"{reference} reference run")
    # A worker silent for this long is stuck: ten times the whole serial run, plus slack.
    patience_s = 60.0 + 10.0 * reference_run_s

    cores = env["machine"]["usable_cores"]
    rows: list[Row] = []
    for n in sorted(rounds):
        rows += _Round(n, rounds[n], workload, expected, reference, patience_s, cores,
                       step).time(repeat)
    order = {m.name: i for i, m in enumerate(chosen)}
    rows.sort(key=lambda r: (order[r.model], r.workers))
    _speedups(rows, reference)
    return CompareResult(workload=workload, workers=counts, repeat=repeat, reference=reference,
                         models=infos, rows=rows, answer=expected,
                         reference_run_s=reference_run_s, idle=idle, environment=env)
