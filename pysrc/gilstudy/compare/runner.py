"""The compare runner: one workload in every selected model at every worker count, timed
interleaved on already-started workers (each repeat lasting --min-time, re-run when outside
load disturbed it: compare/measure.py), every answer checked against the reference model's.
Each interpreter is a session (LocalSession here, RemoteSession for another) driven step by
step, so interpreters interleave too. Models are seen only through their registry entries.
"""

import os
import sys
from typing import Callable, Iterable

import numpy as np

from gilstudy import _checks, kernels, machine
from gilstudy.compare import registry, worker_costs
from gilstudy.compare.function import make_function_workload
from gilstudy.compare.measure import (DEFAULT_MAX_OUTSIDE_CORES, DEFAULT_MIN_TIME_S,
                                      DEFAULT_RERUNS, Timing, dispatch_cost, measure_repeat)
from gilstudy.compare.remote_session import RemoteSession, checked
from gilstudy.compare.facts import Interpreter, ModelInfo, Row, fill_speedups, workers_text
from gilstudy.compare.result import CompareResult
from gilstudy.compare.workload import Work, make_workload
from gilstudy.errors import ModelFailed, WrongAnswer
from gilstudy.pythons import Python
from gilstudy.timing import time_call

__all__ = ["run", "default_workers", "scaling_workers", "check_workers", "REFERENCE",
           "environment", "LocalSession", "make_work", "model_error", "stop_all"]

# The model whose answer every other model must match and whose time the speedups divide.
REFERENCE = "serial-python"

# progress(done, total, what): called after each start-up and each timed run.
Progress = Callable[[int, int, str], None]


def default_workers(cores: int | None = None) -> list[int]:
    """1 worker and the usable cores (default: this machine's): the two counts that answer
    "how much faster on all my cores". More counts, oversubscribed ones too, come only
    when asked for (scaling_workers() gives the usual ladder).

    >>> default_workers(2), default_workers(6), default_workers(1)
    ([1, 2], [1, 6], [1])
    """
    cores = machine.usable_cores() if cores is None else cores
    return sorted({1, cores})


def scaling_workers(cores: int | None = None) -> list[int]:
    """1, 2, 4 ... powers of two below ``cores`` (default: the usable cores), the usable
    cores themselves, and one oversubscribed count at twice that: enough counts for a
    scaling law (``--workers`` takes them).

    >>> scaling_workers(2), scaling_workers(6)
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
    """Sorted distinct worker counts; TypeError or ValueError unless each is an int >= 1
    ('workers: each count must be >= 1, got 0')."""
    counts = list(workers)
    if not counts:
        raise ValueError("workers: give at least one worker count")
    return sorted({_checks.positive_int("workers", "each count", n) for n in counts})


def environment() -> dict:
    """Machine, interpreter and build facts stored with every result."""
    versions = {"python": sys.version.split()[0], "numpy": np.__version__}
    build = kernels.build_info()
    versions["cython"] = build.get("cython_version")
    joblib = sys.modules.get("joblib")
    versions["joblib"] = getattr(joblib, "__version__", None)
    numba = sys.modules.get("numba")  # loaded by the numba-* models, when they ran
    versions["numba"] = getattr(numba, "__version__", None)
    return {"machine": machine.describe(), "build": build, "versions": versions}


def make_work(spec: dict) -> Work:
    """The workload that a Work.spec() describes: a kernel's (``kernel``, ``size``,
    ``items``) or a user's function's (``function``, ``inputs``, ``nogil`` as MODULE:NAME,
    and ``path``, directories to import them from, put first on sys.path)."""
    if "kernel" in spec:
        return make_workload(spec["kernel"], spec["size"], spec["items"])
    for directory in reversed(spec.get("path", [])):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    return make_function_workload(spec["function"], spec["inputs"], spec["nogil"])


def _info(model: registry.Model, interpreter: str, workload: Work) -> ModelInfo:
    reason = model.unavailable_reason(workload)
    return ModelInfo(name=model.label_for(workload), impl=model.impl, summary=model.summary,
                     available=reason is None, reason=reason, reusable=model.reusable,
                     max_workers=model.max_workers, shares_gil=model.shares_gil,
                     interpreter=interpreter, registered_as=model.name, family=model.family,
                     quick=model.quick)


def model_error(name: str, workers: int, what: str, exc: Exception) -> ModelFailed:
    """The error for model ``name`` whose ``what`` raised ``exc`` (the caller raises it from
    ``exc``): WrongAnswer when the model's own answer was found wrong (its items did not
    combine), ModelFailed otherwise."""
    error = WrongAnswer if isinstance(exc, WrongAnswer) else ModelFailed
    return error(f"{name} with {workers_text(workers)}: {what} failed: {type(exc).__name__}: "
                 f"{exc}", subject=name)


def stop_all(handles: dict, workers: int, quietly: bool) -> None:
    """Stop every started model, last started first. An error while stopping is raised as
    ModelFailed, the first one's, after all are stopped, unless ``quietly``: then another
    error is already on its way and is the one to report."""
    first_error = None
    for name, handle in reversed(list(handles.items())):
        try:
            handle.close()
        except Exception as exc:
            if first_error is None:
                first_error = model_error(name, workers, "stopping its workers", exc)
                first_error.__cause__ = exc
    handles.clear()
    if first_error is not None and not quietly:
        raise first_error


class _Round:
    """The models of one worker count under this interpreter, timed together: started
    (``start``, then each model's dispatch cost measured on probe items), run once each
    per ``run_repeat``, stopped (``stop``). A repeat is measured by compare.measure
    (passes until the session's min-time, re-run when outside load disturbed it), and
    every pass's answer is checked against ``expected``. A model that cannot reuse its
    workers is started and stopped inside each repeat. After an error,
    ``stop(quietly=True)`` stops whatever is still running."""

    def __init__(self, workers: int, chosen: list[registry.Model], session: "LocalSession"):
        self.workers = workers
        self.models = chosen
        self.session = session
        self.handles: dict = {}
        gil = machine.gil_enabled()
        self.rows = {m.name: Row(model=session.label_of(m), impl=m.impl, workers=workers,
                                 oversubscribed=workers > session.cores,
                                 restarted=not m.reusable, interpreter=session.label,
                                 gil_enabled=gil)
                     for m in chosen}

    def _start(self, model: registry.Model) -> None:
        name = self.session.name_of(self.session.label_of(model))
        try:
            seconds, handle = time_call(lambda: model.launch(self.session.workload, self.workers))
        except Exception as exc:
            raise model_error(name, self.workers, "starting its workers", exc) from exc
        self.handles[name] = handle
        row = self.rows[model.name]
        row.startup_s.append(seconds)
        if model.dispatches_items and row.dispatch_s is None:
            try:
                row.dispatch_s = dispatch_cost(
                    lambda work: handle.run(work, self.session.patience_s), self.session.workload)
            except Exception as exc:
                raise model_error(name, self.workers, "the dispatch probe", exc) from exc
        self.session.step(f"{name} w{self.workers} start")

    def _run_once(self, model: registry.Model, repeat_index: int) -> None:
        session = self.session
        name = session.name_of(session.label_of(model))
        handle = self.handles[name]

        def check(answer) -> None:
            wrong = session.workload.mismatch(answer, session.expected,
                                              session.name_of(session.reference))
            if wrong is not None:
                raise WrongAnswer(
                    f"{name} with {workers_text(self.workers)} computed a wrong answer for "
                    f"{session.workload.describe()} (repeat {repeat_index + 1}): {wrong}",
                    subject=name)

        try:
            kept, set_aside = measure_repeat(lambda: handle.run(session.workload,
                                                                session.patience_s),
                                             check, session.timing)
        except WrongAnswer as exc:
            if exc.subject == name:
                raise
            raise model_error(name, self.workers, f"repeat {repeat_index + 1}", exc) from exc
        except Exception as exc:
            raise model_error(name, self.workers, f"repeat {repeat_index + 1}", exc) from exc
        self.rows[model.name].repeats.append(kept)
        self.rows[model.name].set_aside.extend(set_aside)
        self.session.step(f"{name} w{self.workers}")

    def start(self) -> None:
        for model in self.models:
            if model.reusable:
                self._start(model)

    def run_repeat(self, repeat_index: int) -> None:
        for model in self.models:
            if model.reusable:
                self._run_once(model, repeat_index)
                continue
            self._start(model)
            self._run_once(model, repeat_index)
            self.handles.pop(self.session.name_of(self.session.label_of(model))).close()

    def stop(self, quietly: bool = False) -> None:
        stop_all(self.handles, self.workers, quietly)


class LocalSession:
    """The selected models under this interpreter, measured one step at a time so that a
    caller can interleave several interpreters: ``run_reference()`` once, then for each worker
    count in ``worker_counts``: ``start(n)``, ``run_repeat(i)`` for each repeat, ``stop()``;
    ``finish()`` returns the rows and the environment. ``close()`` stops whatever is still
    running (quietly: it is for error paths) and is idempotent.

    ``label`` names the interpreter in rows; with ``labelled`` the model names in progress
    and error messages carry it (``threads-python@3.13t``). The child process of
    ``gilstudy compare --python`` runs one of these for its interpreter.

    Raises ModelFailed when the reference model cannot run here; a model that fails or
    disagrees raises ModelFailed or WrongAnswer naming it, as run() describes.
    """

    def __init__(self, workload: Work, chosen: list[registry.Model], reference: str,
                 counts: list[int], repeat: int, label: str, labelled: bool = False,
                 step: Callable[[str], None] = lambda what: None,
                 timing: Timing = Timing()):
        self.workload = workload
        self.timing = timing
        self.executable = sys.executable
        self.label = label
        self.labelled = labelled
        self.step = step
        self.cores = machine.usable_cores()
        self.infos = [_info(m, label, workload) for m in chosen]
        self._baseline = registry.get(reference)
        self.reference = self.label_of(self._baseline)
        runnable = [m for m, info in zip(chosen, self.infos) if info.available]
        if self._baseline not in runnable:
            raise ModelFailed(f"the reference model {self.name_of(self.reference)} cannot run "
                              f"here: {self._baseline.unavailable_reason(workload)}",
                              subject=self.name_of(self.reference))
        self._plan: dict[int, list[registry.Model]] = {}
        for model in runnable:
            for n in model.worker_counts(counts):
                self._plan.setdefault(n, []).append(model)
        self.worker_counts = sorted(self._plan)
        self.steps = 1 + sum(len(ms) * repeat + sum(1 for m in ms if m.reusable)
                             for ms in self._plan.values())
        self._order = {self.label_of(m): i for i, m in enumerate(chosen)}
        self._rows: list[Row] = []
        self._round: _Round | None = None
        self.expected = None
        self.patience_s = float("inf")

    def name_of(self, model: str) -> str:
        return f"{model}@{self.label}" if self.labelled else model

    def label_of(self, model: registry.Model) -> str:
        """How rows name ``model`` for this workload (registry.Model.label_for)."""
        return model.label_for(self.workload)

    def run_reference(self, patience_s: float = float("inf")) -> tuple[object, float]:
        """One untimed run of the reference model: the answer every model must give (and
        warm caches). Returns the answer and its seconds. It runs in this thread, so there
        is nothing to wait for: ``patience_s`` is for RemoteSession's sake. Raises
        ModelFailed, with the model's own error as the cause, when the reference fails."""
        name = self.name_of(self.reference)
        try:
            handle = self._baseline.launch(self.workload, 1)
        except Exception as exc:
            raise model_error(name, 1, "starting its workers", exc) from exc
        try:
            seconds, self.expected = time_call(lambda: handle.run(self.workload, float("inf")))
        except Exception as exc:
            raise model_error(name, 1, "the reference run", exc) from exc
        finally:
            handle.close()
        # A worker silent for this long is stuck: ten times the whole serial run, plus slack.
        self.patience_s = 60.0 + 10.0 * seconds
        self.step(f"{name} reference run")
        return self.expected, seconds

    def start(self, workers: int) -> None:
        assert self._round is None and self.expected is not None, \
            "run_reference() first, then one round at a time"
        self._round = _Round(workers, self._plan[workers], self)
        self._round.start()

    def run_repeat(self, repeat_index: int) -> None:
        self._round.run_repeat(repeat_index)

    def stop(self) -> None:
        finished, self._round = self._round, None
        self._rows += finished.rows.values()
        finished.stop()

    def finish(self) -> tuple[list[Row], dict]:
        """The rows, in registry order then by workers, and the environment as it is now
        (after the runs, so the GIL state is the one the runs ended with: importing an
        extension that is not free-threading safe turns the GIL back on)."""
        rows = sorted(self._rows, key=lambda r: (self._order[r.model], r.workers))
        return rows, environment()

    def close(self) -> None:
        unfinished, self._round = self._round, None
        if unfinished is not None:
            unfinished.stop(quietly=True)


def _interleave(sessions: list, repeat: int) -> None:
    """Time every session's models: for each worker count, every session starts its
    workers, then each repeat runs every session once, in turn, then all stop. So the
    interpreters take turns at the level of single runs, as the models of one interpreter
    do, and a burst of outside load hits them alike. On an error the caller closes the
    sessions, which stops what is still running.

    The cost, against running each interpreter's whole comparison one after the other:
    while one interpreter runs, the others' workers for that count are alive but idle
    (blocked on their queues, using memory but no CPU), and each step of a child
    interpreter is one request and reply over its pipe (well under a millisecond, outside
    the timed calls). Workers are still started once per count, not once per repeat, so
    no repeat pays a start-up."""
    for n in sorted({n for session in sessions for n in session.worker_counts}):
        active = [session for session in sessions if n in session.worker_counts]
        for session in active:
            session.start(n)
        for repeat_index in range(repeat):
            for session in active:
                session.run_repeat(repeat_index)
        for session in reversed(active):
            session.stop()


def _unique_labels(labels: list[str]) -> list[str]:
    """Labels made distinct in order: ['3.11', '3.13t', '3.11'] -> ['3.11', '3.13t', '3.11#2']."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return unique


def _workload(kernel, size, items, function, inputs, nogil) -> Work:
    if function is None:
        if inputs is not None or nogil is not None:
            raise ValueError("compare.run: inputs and nogil go with function=, which is missing")
        return make_workload("count_primes" if kernel is None else kernel, size, items)
    given = [name for name, value in (("kernel", kernel), ("size", size), ("items", items))
             if value is not None]
    if given:
        raise ValueError(f"compare.run: {', '.join(given)} cannot go with function= (its "
                         "inputs are the items)")
    if inputs is None:
        raise ValueError("compare.run: function= needs inputs=, an iterable of argument tuples")
    return make_function_workload(function, inputs, nogil)


def run(kernel: str | None = None, size: int | None = None, items: int | None = None,
        workers: Iterable[int] | None = None, models: str | Iterable[str] | None = None,
        repeat: int = 5, progress: Progress | None = None, idle_timeout_s: float = 30.0,
        reference: str = REFERENCE,
        pythons: Iterable[str | os.PathLike | Python] = (), *,
        function=None, inputs=None, nogil=None, workload: Work | None = None,
        min_time_s: float = DEFAULT_MIN_TIME_S,
        max_outside_cores: float = DEFAULT_MAX_OUTSIDE_CORES,
        reruns: int = DEFAULT_RERUNS, footprint: bool = False) -> CompareResult:
    """Run a workload in every selected model at every worker count, under this
    interpreter and each of ``pythons``; return the CompareResult.

    The workload is ``kernel`` (default count_primes) over ``size`` in ``items`` work
    items (defaults: the kernel's default size, 64 items), or a user's ``function`` over
    ``inputs``: ``[function(*args) for args in inputs]``, with ``nogil`` a second
    implementation of it that releases the GIL (the "-cython" models run it; reports name
    them "-nogil"). ``function`` and ``nogil`` are callables or "MODULE:NAME" strings,
    ``inputs`` an iterable of argument tuples, a callable returning one, or a
    "MODULE:NAME" naming either (gilstudy.compare.function). Every model must return the
    serial results in order. A process model needs a function that a new process can
    import by name; for one that cannot (defined in __main__, a lambda), those models are
    reported unavailable with the reason and the fix. ``workload`` passes a ready Work.

    ``workers`` defaults to default_workers() (1 and the usable cores); ``models`` (names
    or glob patterns, comma-separated or a list; "all" for every registered model) to the
    quick default set (registry.quick_models()). The reference model always runs,
    at 1 worker: its answer is the one every model must give and its time the one speedups
    divide. Models that cannot run here are reported with the reason, not run.

    ``pythons`` are other interpreters (paths, or gilstudy.compare.probe() results)
    with this gilstudy installed; each runs the same models in a child process. This
    interpreter comes first and is the default: ``speedup_vs_serial`` divides its
    reference time, ``speedup_vs_own_serial`` the row's own interpreter's. Rows are
    labelled by interpreter (gilstudy.machine.interpreter_label(), '#2' added when two
    share a label). The reference answer under every interpreter must equal this one's
    (as Work.summary() gives it), and each interpreter checks its models' answers against
    its own reference.

    Before timing it waits up to ``idle_timeout_s`` for idle CPUs and records whether they
    were. Then, for each worker count, every interpreter starts every model's workers
    (timed apart as the start-up; then each model's dispatch cost per item is measured on
    items that do no work), and the models run interleaved, ``repeat`` rounds, each round
    running every interpreter's models in turn. In each repeat a model runs the whole
    workload pass after pass until the passes add up to ``min_time_s``; the time per pass
    is its sample. Other processes' CPU use is sampled during each repeat; a repeat in
    which they used more than ``max_outside_cores`` cores is run again, at most
    ``reruns`` times (compare.measure). The median of the repeats is the figure, because
    one burst of outside load moves a mean but not a median.

    With ``footprint``, after the timing and with every model stopped, it measures what a
    worker costs before any work, under each interpreter: the start-up time and memory of
    a thread, a subinterpreter and a coprocess (gilstudy.footprint, each kind in a fresh
    process; a few seconds in all), at the widest worker count within the usable cores.
    The result's ``footprints`` hold them (a kind that cannot run, or whose measurement
    failed, with the reason).

    Raises UnknownKernelError, TypeError, ValueError or OverflowError for bad arguments,
    before anything runs (ValueError ``pythons: PATH: what is wrong`` for an interpreter
    that is missing, is not a Python or lacks a matching gilstudy). Once running, it raises
    a gilstudy.errors.CompareError (a RuntimeError) whose ``subject`` names what failed:

    - ModelFailed: a model's workers failed to start, to run the workload or to stop (or
      the reference model cannot run here); the model's own error is the ``__cause__``.
      A user's function that raises makes the first model running it fail so.
    - WrongAnswer: a model's answer differs from the reference model's (for a function:
      which result, for which inputs), or its results do not combine into one (items
      missing or repeated), or another interpreter's reference answer differs from this
      one's.
    - InterpreterFailed: another interpreter could not be started, exited early, stopped
      answering (it is killed) or broke the --python protocol.

    Every worker and child process is stopped either way.

    >>> result = run("count_primes", size=2000, items=4, workers=[1], repeat=1,
    ...              models="serial-*", idle_timeout_s=0, min_time_s=0)
    >>> [row.model for row in result.rows]
    ['serial-python', 'serial-cython']
    """
    if workload is None:
        workload = _workload(kernel, size, items, function, inputs, nogil)
    elif not isinstance(workload, Work):
        raise TypeError(f"compare.run: workload must be a Work, got {type(workload).__name__}")
    elif any(v is not None for v in (kernel, size, items, function, inputs, nogil)):
        raise ValueError("compare.run: workload= cannot go with kernel, size, items, function, "
                         "inputs or nogil")
    counts = default_workers() if workers is None else check_workers(workers)
    repeat = _checks.positive_int("compare.run", "repeat", repeat)
    timing = Timing(min_time_s, max_outside_cores, reruns)
    baseline = registry.get(reference)
    chosen = registry.select(models)
    if baseline not in chosen:
        chosen.insert(0, baseline)
    others = [checked(python, option="pythons:") for python in pythons]
    spec = workload.spec() if others else None  # ValueError now for a workload with no names
    labels = _unique_labels([machine.interpreter_label()] + [p.label for p in others])
    labelled = len(labels) > 1
    reference_label = baseline.label_for(workload)

    done = 0
    total = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    sessions: list = []
    try:
        sessions.append(LocalSession(workload, chosen, reference, counts, repeat, labels[0],
                                     labelled, step, timing))
        for python, label in zip(others, labels[1:]):
            sessions.append(RemoteSession(python, label, spec, chosen, reference, counts,
                                          repeat, step, timing))
        total = sum(session.steps for session in sessions)
        if progress is not None:
            progress(0, total, "waiting for idle CPUs")
        idle = machine.wait_for_idle_cpus(timeout_s=idle_timeout_s)
        expected, reference_run_s = sessions[0].run_reference()
        reference_runs = [reference_run_s]
        for session in sessions[1:]:
            answer, seconds = session.run_reference(patience_s=60.0 + 10.0 * reference_run_s)
            if answer != workload.summary(expected):
                raise WrongAnswer(
                    f"{reference_label}@{session.label} ({session.executable}) computed a "
                    f"different answer for {workload.describe()}: got {answer!r}, "
                    f"{reference_label}@{labels[0]} got {workload.summary(expected)!r}",
                    subject=f"{reference_label}@{session.label}")
            reference_runs.append(seconds)
        _interleave(sessions, repeat)
        finished = [session.finish() for session in sessions]
    finally:
        for session in reversed(sessions):
            session.close()

    interpreters = []
    rows: list[Row] = []
    infos: list[ModelInfo] = []
    for session, (session_rows, env), seconds in zip(sessions, finished, reference_runs):
        rows += session_rows
        infos += session.infos
        interpreters.append(Interpreter(
            label=session.label, executable=session.executable, is_default=not interpreters,
            gil_enabled=env["machine"]["gil_enabled"], reference_run_s=seconds,
            environment=env))
    model_order = {m.label_for(workload): i for i, m in enumerate(chosen)}
    label_order = {label: i for i, label in enumerate(labels)}
    rows.sort(key=lambda r: (model_order[r.model], label_order[r.interpreter], r.workers))
    infos.sort(key=lambda m: (model_order[m.name], label_order[m.interpreter]))
    fill_speedups(rows, reference_label, labels[0])
    footprints, footprint_kernel = [], None
    if footprint:
        footprint_kernel = getattr(workload, "kernel", "count_primes")
        # Each interpreter as it was given: another's path may be a wrapper (a chroot's).
        footprints = worker_costs.measure_all(
            [(session.label, session.python.path if isinstance(session, RemoteSession)
              else session.executable) for session in sessions],
            worker_costs.footprint_workers(counts, machine.usable_cores()), footprint_kernel)
    return CompareResult(workload=workload, workers=counts, repeat=repeat,
                         reference=reference_label, models=infos, rows=rows, expected=expected,
                         reference_run_s=reference_run_s, idle=idle,
                         environment=interpreters[0].environment, interpreters=interpreters,
                         timing=timing, footprints=footprints,
                         footprint_kernel=footprint_kernel)
