# The execution models `gilstudy compare` times, as a registry. A Model entry says what a
# model needs and how to start N workers; the Workers handle it returns runs a workload and
# stops them. The runner, report and CLI only go through these entries, so a new model
# (subinterpreters, MPI ranks) is one register() call and nothing else changes.

import fnmatch
import functools
import importlib
import multiprocessing
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol

from gilstudy.compare.workload import Workload
from gilstudy.kernels import IMPLS
from gilstudy.kernels.work import KernelConsumer

__all__ = ["Workers", "Model", "register", "unregister", "registered", "get", "names", "all_models",
           "select", "needs_module", "needs_openmp", "needs_process_pools", "QUEUE_DEPTH"]


class Workers(Protocol):
    """Started workers of one model, ready for work.

    ``run(workload, patience_s)`` does the whole workload on them and returns its combined
    answer; it may be called many times. A model whose workers wait for results may give
    up after ``patience_s`` seconds without progress (the runner derives it from the serial
    reference run) and raise. ``close()`` stops the workers and waits for them; it is
    idempotent and raises the workers' own error if one failed.
    """

    def run(self, workload: Workload, patience_s: float) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Model:
    """One execution model: a registry entry.

    ``start(workload, impl, workers)`` starts ``workers`` workers and returns a ready
    Workers handle (the runner times it as the start-up). ``impl`` is the kernel
    implementation the model runs, "python" or "cython". ``requires`` are checks that each
    return None when the model can run here, or the reason it cannot. ``max_workers`` caps
    the worker counts (1 for the serial baselines, which run at one worker whatever is
    asked). ``reusable=False`` makes the runner start and stop the workers around every
    repeat. ``shares_gil`` says the workers are threads of this interpreter, so pure
    Python on them contends for its GIL; the verdict reports on those models.
    """

    name: str
    impl: str
    summary: str
    start: Callable[[Workload, str, int], Workers]
    requires: tuple[Callable[[], str | None], ...] = ()
    max_workers: int | None = None
    reusable: bool = True
    shares_gil: bool = False

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise ValueError(f"model {self.name!r}: impl must be one of {', '.join(IMPLS)}, "
                             f"got {self.impl!r}")
        if self.max_workers is not None and self.max_workers < 1:
            raise ValueError(f"model {self.name!r}: max_workers must be >= 1, got {self.max_workers}")

    def unavailable_reason(self) -> str | None:
        """None when the model can run here, else why not. Never raises: a check that
        fails is reported as the reason."""
        for check in self.requires:
            try:
                reason = check()
            except Exception as exc:
                reason = f"availability check failed: {type(exc).__name__}: {exc}"
            if reason:
                return reason
        return None

    @property
    def is_available(self) -> bool:
        return self.unavailable_reason() is None

    def worker_counts(self, requested: Iterable[int]) -> list[int]:
        """The requested worker counts this model runs at; a capped model that fits none
        of them runs at its cap (the serial baselines always run, at 1 worker)."""
        requested = sorted(set(requested))
        if self.max_workers is None:
            return requested
        return [n for n in requested if n <= self.max_workers] or [self.max_workers]

    def launch(self, workload: Workload, workers: int) -> Workers:
        """Start ``workers`` workers of this model for ``workload``."""
        return self.start(workload, self.impl, workers)


# ---- the registry ------------------------------------------------------------------

_REGISTRY: dict[str, Model] = {}


def register(model: Model, replace: bool = False) -> Model:
    """Add ``model`` to the registry (after the models already there); return it.

    Raises ValueError if a model of that name is registered, unless ``replace``.
    """
    if model.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def unregister(name: str) -> Model:
    """Remove and return model ``name``; LookupError if there is none."""
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise LookupError(f"no model named {name!r} is registered") from None


@contextmanager
def registered(model: Model) -> Iterator[Model]:
    """Register ``model`` for the duration of a ``with`` block (tests, notebooks)."""
    register(model)
    try:
        yield model
    finally:
        unregister(model.name)


def get(name: str) -> Model:
    """Model ``name``; ValueError naming the registered models if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; models: {', '.join(_REGISTRY)}") from None


def names() -> list[str]:
    return list(_REGISTRY)


def all_models() -> list[Model]:
    return list(_REGISTRY.values())


def select(spec: str | Iterable[str] | None = None) -> list[Model]:
    """The models a ``--models`` value names, in registry order.

    ``spec`` is a comma-separated string or a list of names and glob patterns
    (``'*-cython'``, ``'threads-*'``); None means every model. Raises ValueError for a
    name that is not registered or a pattern that matches none, listing the models.
    """
    if spec is None:
        return all_models()
    tokens = spec.split(",") if isinstance(spec, str) else list(spec)
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        raise ValueError(f"no model named; models: {', '.join(_REGISTRY)}")
    chosen: set[str] = set()
    for token in tokens:
        if any(c in token for c in "*?["):
            matches = fnmatch.filter(_REGISTRY, token)
            if not matches:
                raise ValueError(f"model pattern {token!r} matches no model; models: "
                                 f"{', '.join(_REGISTRY)}")
            chosen.update(matches)
        else:
            chosen.add(get(token).name)
    return [m for m in _REGISTRY.values() if m.name in chosen]


# ---- availability checks -----------------------------------------------------------

def needs_module(module: str, hint: str = "") -> Callable[[], str | None]:
    """A check: ``module`` can be imported."""

    def check() -> str | None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                return f"{module} not installed" + (f" ({hint})" if hint else "")
            return f"{module} cannot be imported: {exc}"
        except ImportError as exc:
            return f"{module} cannot be imported: {exc}"
        return None

    check.__qualname__ = f"needs_module({module!r})"
    return check


def needs_openmp() -> str | None:
    """A check: the Cython kernels were compiled with OpenMP, so prange runs in parallel."""
    from gilstudy.kernels import build_info

    if not build_info()["openmp"]:
        return ("gilstudy's Cython kernels were built without OpenMP, so prange would run "
                "on one thread; rebuild with a compiler that supports -fopenmp")
    return None


def needs_process_pools() -> str | None:
    """A check: this platform has the semaphores process pools are built on."""
    try:
        importlib.import_module("multiprocessing.synchronize")
    except ImportError as exc:
        return f"process pools do not work on this platform (multiprocessing: {exc})"
    return None


# ---- workers of the built-in models -------------------------------------------------

def _probe_items(workload: Workload, count: int) -> list[tuple[int, tuple]]:
    # Negative indexes keep probe results apart from the workload's items.
    return [(-1 - k, workload.probe_args()) for k in range(count)]


class _SerialWorkers:
    """One KernelConsumer called inline in this thread: the baseline, no concurrency."""

    def __init__(self, workload: Workload, impl: str, workers: int):
        assert workers == 1, "serial models run on one worker"
        self._consumer = KernelConsumer(workload.kernel, impl)

    def run(self, workload: Workload, patience_s: float) -> object:
        return workload.combine(self._consumer.send(item) for item in workload.items())

    def close(self) -> None:
        self._consumer.close()


class _PrangeWorkers:
    """One call of the kernel's prange twin over the whole workload, its loop split over
    ``workers`` OpenMP threads (the items are not used: prange splits the loop itself).
    OpenMP starts its threads inside the first call, so their start-up lands in the first
    timed repeat, where it barely moves the median."""

    def __init__(self, workload: Workload, impl: str, workers: int):
        from gilstudy.kernels import cython

        assert impl == "cython", "prange runs the compiled kernels only"
        self._kernel = getattr(cython, f"{workload.kernel}_prange")
        self._nthreads = workers

    def run(self, workload: Workload, patience_s: float) -> object:
        return self._kernel(*workload.whole_args(), self._nthreads)

    def close(self) -> None:
        return None


# Items a ConsumerThread may queue: bounded, so Dispatch's least-loaded choice keeps
# balancing uneven items the way a dynamic schedule does, yet deep enough that the
# producer seldom waits when items are tiny.
QUEUE_DEPTH = 8


class _DispatchWorkers:
    """``workers`` runners, each running a KernelConsumer, started with
    gilstudy.dispatch.start_runners (so fed through one Dispatch, least-loaded first);
    results come back through one Collect. ``start_one(workload, impl, results)`` starts
    one runner: a ConsumerThread or a coprocess. Start-up ends when every worker has
    answered a probe item, sent to each directly so that none is left unconfirmed.

    If a worker fails, its error (ConsumerError, RemoteError, CoprocessDied) is raised by
    the next ``run`` or by ``close``; a worker that stops answering makes ``run`` raise
    after ``patience_s`` seconds without a result.
    """

    def __init__(self, workload: Workload, impl: str, workers: int,
                 start_one: Callable[[Workload, str, object], object]):
        from gilstudy.consumers import Collect
        from gilstudy.dispatch import start_runners

        self._results = Collect()
        self._dispatch = start_runners(lambda index: start_one(workload, impl, self._results),
                                       workers)
        try:
            for runner, probe in zip(self._dispatch.consumers, _probe_items(workload, workers)):
                runner.send(probe)
            self._results.take(workers, timeout=_START_PATIENCE_S)
        except BaseException:
            self._dispatch.abort()
            raise

    def run(self, workload: Workload, patience_s: float) -> object:
        items = workload.items()
        for item in items:
            self._dispatch.send(item)
        try:
            pairs = self._results.take(len(items), None if patience_s == float("inf")
                                       else patience_s)
        except TimeoutError:
            self.close()  # raises the failed worker's own error when it has one
            raise
        return workload.combine(pairs)

    def close(self) -> None:
        self._dispatch.close()


# Seconds a new worker may take to answer its probe: a fresh interpreter importing numpy
# on a loaded machine takes a second or two; this is only reached if one hangs.
_START_PATIENCE_S = 120.0


def _thread_worker(workload: Workload, impl: str, results) -> object:
    from gilstudy.consumers import ConsumerThread

    return ConsumerThread(KernelConsumer(workload.kernel, impl), maxsize=QUEUE_DEPTH,
                          results=results)


def _coprocess_worker(workload: Workload, impl: str, results) -> object:
    from gilstudy.coprocess import spawn

    return spawn(KernelConsumer, workload.kernel, impl, results=results)


class _PoolWorkers:
    """concurrent.futures.ProcessPoolExecutor with ``workers`` processes, started with
    "spawn" (a fresh interpreter each, like a coprocess, and no forking of a process that
    has threads); items go through ``executor.map`` with its defaults (one item per task).
    Start-up ends when the pool has answered one probe item per worker. ``close`` shuts
    the pool down, cancelling what has not started, and waits for the processes."""

    def __init__(self, workload: Workload, impl: str, workers: int):
        from concurrent.futures import ProcessPoolExecutor

        self._consumer = KernelConsumer(workload.kernel, impl)
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            list(self._executor.map(self._consumer.send, _probe_items(workload, workers)))
        except BaseException:
            self._executor.shutdown(wait=True, cancel_futures=True)
            raise

    def run(self, workload: Workload, patience_s: float) -> object:
        return workload.combine(self._executor.map(self._consumer.send, workload.items()))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class _JoblibWorkers:
    """``joblib.Parallel(n_jobs=workers)`` on the loky backend, kept open (managed) across
    runs, with joblib's defaults (automatic batching of small items). loky keeps one
    process-wide executor: the joblib models started at the same worker count share its
    processes, so whichever starts second finds them running and reports almost no
    start-up. ``close`` kills that executor's processes rather than leaving them idle for
    loky's five-minute timeout."""

    def __init__(self, workload: Workload, impl: str, workers: int):
        import joblib
        from joblib.externals.loky import get_reusable_executor

        self._delayed = joblib.delayed
        self._consumer = KernelConsumer(workload.kernel, impl)
        self._parallel = joblib.Parallel(n_jobs=workers, backend="loky")
        self._parallel.__enter__()
        self._executor = None
        try:
            self._parallel(self._delayed(self._consumer.send)(probe)
                           for probe in _probe_items(workload, workers))
            # The executor joblib just used (reuse=True returns it as it is).
            self._executor = get_reusable_executor(reuse=True)
        except BaseException:
            self.close()
            raise

    def run(self, workload: Workload, patience_s: float) -> object:
        return workload.combine(self._parallel(self._delayed(self._consumer.send)(item)
                                               for item in workload.items()))

    def close(self) -> None:
        self._parallel.__exit__(None, None, None)
        if self._executor is not None:
            self._executor.shutdown(wait=True, kill_workers=True)
            self._executor = None


# ---- the built-in models, in the order reports list them ----------------------------

_CONSUMERS = needs_module("gilstudy.consumers")
_COPROCESS = needs_module("gilstudy.coprocess")
_JOBLIB = needs_module("joblib", hint="pip install 'gilstudy[compare]'")


def _register_pair(family: str, summary: str, start, **options) -> None:
    for impl in IMPLS:
        register(Model(f"{family}-{impl}", impl, summary.format(impl=impl), start, **options))


_register_pair("serial", "the {impl} kernel on every item in turn, in this thread: the baseline",
               _SerialWorkers, max_workers=1, shares_gil=True)
_register_pair("threads", "N ConsumerThreads fed through Dispatch, running the {impl} kernel",
               functools.partial(_DispatchWorkers, start_one=_thread_worker),
               requires=(_CONSUMERS,), shares_gil=True)
_register_pair("coprocess", "N coprocesses (pickle over pipes) fed through Dispatch, running "
               "the {impl} kernel", functools.partial(_DispatchWorkers, start_one=_coprocess_worker),
               requires=(_CONSUMERS, _COPROCESS))
register(Model("prange-cython", "cython", "one call whose loop Cython prange splits over N "
               "OpenMP threads (dynamic schedule)", _PrangeWorkers,
               requires=(needs_openmp,), shares_gil=True))
_register_pair("pool", "concurrent.futures.ProcessPoolExecutor with N workers running the "
               "{impl} kernel", _PoolWorkers, requires=(needs_process_pools,))
_register_pair("joblib", "joblib.Parallel (loky backend) with N workers running the {impl} "
               "kernel", _JoblibWorkers, requires=(_JOBLIB, needs_process_pools))
