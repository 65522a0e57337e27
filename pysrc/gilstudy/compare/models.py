"""The built-in execution models of `gilstudy compare`: the Workers class of each (serial,
threads and coprocesses through Dispatch, prange, ProcessPoolExecutor, joblib) and its
registration in gilstudy.compare.registry, in the order reports list them.
"""

import functools
import multiprocessing
import time
from typing import Callable, Iterable

from gilstudy.compare import registry
from gilstudy.compare.workload import Work
from gilstudy.consumers import Collect, ConsumerThread
from gilstudy.dispatch import start_runners
from gilstudy.kernels import IMPLS
from gilstudy.processes import spawn

__all__ = ["QUEUE_DEPTH", "DispatchWorkers", "ExecutorWorkers", "one_at_a_time", "probe_items",
           "register_pair"]


# ---- workers of the built-in models -------------------------------------------------

def probe_items(workload: Work, count: int) -> list[tuple[int, tuple]]:
    """``count`` items of the workload that do no work, to time a model's dispatch cost."""
    # Negative indexes keep probe results apart from the workload's items.
    return [(-1 - k, workload.probe_args()) for k in range(count)]


class _SerialWorkers:
    """The workload's consumer called inline in this thread: the baseline, no concurrency."""

    def __init__(self, workload: Work, impl: str, workers: int):
        assert workers == 1, "serial models run on one worker"
        self._consumer = workload.consumer(impl)

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.combine(self._consumer.send(item) for item in workload.items())

    def close(self) -> None:
        self._consumer.close()


class _PrangeWorkers:
    """One call of the kernel's prange twin over the whole workload, its loop split over
    ``workers`` OpenMP threads (the items are not used: prange splits the loop itself).
    OpenMP starts its threads inside the first call, so their start-up lands in the first
    timed pass, where it barely moves the median."""

    def __init__(self, workload: Work, impl: str, workers: int):
        assert workload.parallel_call(impl) is not None, "see registry.needs_parallel_call"
        self._impl = impl
        self._nthreads = workers

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.parallel_call(self._impl)(self._nthreads)

    def close(self) -> None:
        return None


# Items a ConsumerThread may queue: bounded, so Dispatch's least-loaded choice keeps
# balancing uneven items the way a dynamic schedule does, yet deep enough that the
# producer seldom waits when items are tiny.
QUEUE_DEPTH = 8


class DispatchWorkers:
    """``workers`` runners, each running the workload's consumer, behind one Dispatch (so
    fed least-loaded first); results come back through one Collect.
    ``start_fan(workload, impl, workers, results)`` starts them and returns the Dispatch:
    through gilstudy.dispatch.start_runners, either directly (one_at_a_time: ConsumerThreads,
    coprocesses) or inside a function that does (gilstudy.mpi.ranks,
    gilstudy.interpreters.subinterpreters). Start-up ends when every worker has answered
    a probe item, sent to each directly so that none is left unconfirmed.

    If a worker fails, its error (ConsumerError, RemoteError, CoprocessDied) is raised by
    ``run``: within a tenth of a second for a worker behind a framed channel (a coprocess,
    a rank, a subinterpreter), by the next ``run`` or ``close`` for a thread; a worker that
    stops answering makes ``run`` raise after ``patience_s`` seconds without a result.
    """

    def __init__(self, workload: Work, impl: str, workers: int,
                 start_fan: Callable[[Work, str, int, object], object]):
        self._results = Collect()
        self._dispatch = start_fan(workload, impl, workers, self._results)
        try:
            for runner, probe in zip(self._dispatch.consumers, probe_items(workload, workers)):
                runner.send(probe)
            self._results.take(workers, timeout=_START_PATIENCE_S)
        except BaseException:
            self._dispatch.abort()
            raise

    def run(self, workload: Work, patience_s: float) -> object:
        items = workload.items()
        for item in items:
            self._dispatch.send(item)
        # Nothing more comes: runners that batch (coprocesses) write their last batch now
        # rather than after their flush interval, which would idle the workers each pass.
        self._dispatch.flush()
        deadline = time.monotonic() + patience_s
        while True:
            try:
                pairs = self._results.take(
                    len(items), max(0.0, min(_CHECK_EVERY_S, deadline - time.monotonic())))
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    self.close()  # raises the failed worker's own error when it has one
                    raise
                # A far-side worker whose consumer raised has halted its link, and flush()
                # raises its error now, not after the whole patience.
                self._dispatch.flush()
        return workload.combine(pairs)

    def close(self) -> None:
        self._dispatch.close()


# How often run() looks for a failed worker while it waits for results.
_CHECK_EVERY_S = 0.1

# Seconds a new worker may take to answer its probe: a fresh interpreter importing numpy
# on a loaded machine takes a second or two; this is only reached if one hangs.
_START_PATIENCE_S = 120.0


def one_at_a_time(start_one: Callable[[Work, str, object], object]):
    """A ``start_fan`` for DispatchWorkers that starts each runner with
    ``start_one(workload, impl, results)`` through gilstudy.dispatch.start_runners."""

    def start_fan(workload: Work, impl: str, workers: int, results) -> object:
        return start_runners(lambda index: start_one(workload, impl, results), workers)

    return start_fan


def _thread_worker(workload: Work, impl: str, results) -> object:
    return ConsumerThread(workload.consumer(impl), maxsize=QUEUE_DEPTH, results=results)


def _coprocess_worker(workload: Work, impl: str, results) -> object:
    factory, args = workload.consumer_factory(impl)
    return spawn(factory, *args, results=results)


class ExecutorWorkers:
    """A concurrent.futures executor with ``workers`` workers, made by
    ``make_executor(workers)``; items go through ``executor.map`` with its defaults (one
    item per task, a call of the consumer's ``send``, pickled to the worker). Start-up ends
    when the executor has answered one probe item per worker. An item whose consumer
    raised makes ``run`` raise that error, as the executor reports it; no result for
    ``patience_s`` makes it raise TimeoutError. ``close`` shuts the executor down,
    cancelling what has not started, and waits for its workers."""

    def __init__(self, workload: Work, impl: str, workers: int,
                 make_executor: Callable[[int], object]):
        self._consumer = workload.consumer(impl)
        self._executor = make_executor(workers)
        try:
            list(self._executor.map(self._consumer.send, probe_items(workload, workers)))
        except BaseException:
            self._executor.shutdown(wait=True, cancel_futures=True)
            raise

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.combine(self._executor.map(
            self._consumer.send, workload.items(),
            timeout=None if patience_s == float("inf") else patience_s))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _process_pool(workers: int) -> object:
    """concurrent.futures.ProcessPoolExecutor started with "spawn": a fresh interpreter
    each, like a coprocess, and no forking of a process that has threads."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


class _JoblibWorkers:
    """``joblib.Parallel(n_jobs=workers)`` on the loky backend, kept open (managed) across
    runs, with joblib's defaults (automatic batching of small items). loky keeps one
    process-wide executor: the joblib models started at the same worker count share its
    processes, so whichever starts second finds them running and reports almost no
    start-up. ``close`` kills that executor's processes rather than leaving them idle for
    loky's five-minute timeout."""

    def __init__(self, workload: Work, impl: str, workers: int):
        import joblib
        from joblib.externals.loky import get_reusable_executor

        self._delayed = joblib.delayed
        self._consumer = workload.consumer(impl)
        self._parallel = joblib.Parallel(n_jobs=workers, backend="loky")
        self._parallel.__enter__()
        self._executor = None
        try:
            self._parallel(self._delayed(self._consumer.send)(probe)
                           for probe in probe_items(workload, workers))
            # The executor joblib just used (reuse=True returns it as it is).
            self._executor = get_reusable_executor(reuse=True)
        except BaseException:
            self.close()
            raise

    def run(self, workload: Work, patience_s: float) -> object:
        return workload.combine(self._parallel(self._delayed(self._consumer.send)(item)
                                               for item in workload.items()))

    def close(self) -> None:
        self._parallel.__exit__(None, None, None)
        if self._executor is not None:
            self._executor.shutdown(wait=True, kill_workers=True)
            self._executor = None


# ---- the built-in models, in the order reports list them ----------------------------

_JOBLIB = registry.needs_module("joblib", hint="pip install 'gilstudy[compare]'")


def register_pair(prefix: str, summary: str, start, quick: Iterable[str] = (),
                  **options) -> None:
    """Register ``prefix``-python and ``prefix``-cython, the summary's ``{impl}`` filled in;
    those whose impl is in ``quick`` are in the default set (registry.Model.quick)."""
    for impl in IMPLS:
        registry.register(registry.Model(f"{prefix}-{impl}", impl, summary.format(impl=impl),
                                         start, quick=impl in quick, **options))


register_pair("serial", "the {impl} kernel on every item in turn, in this thread: the baseline",
               _SerialWorkers, max_workers=1, shares_gil=True, family="serial", quick=IMPLS)
register_pair("threads", "N ConsumerThreads fed through Dispatch, running the {impl} kernel",
               functools.partial(DispatchWorkers, start_fan=one_at_a_time(_thread_worker)),
               shares_gil=True, family="threads", quick=IMPLS)
register_pair("coprocess", "N coprocesses (pickle over pipes) fed through Dispatch, running "
               "the {impl} kernel",
               functools.partial(DispatchWorkers, start_fan=one_at_a_time(_coprocess_worker)),
               requires_work=(registry.needs_new_process,), family="coprocesses", quick=IMPLS)
registry.register(registry.Model(
    "prange-cython", "cython", "one call whose loop Cython prange splits over N OpenMP threads "
    "(dynamic schedule)", _PrangeWorkers, requires=(registry.needs_openmp,), shares_gil=True,
    requires_work=(registry.needs_parallel_call,), dispatches_items=False, family="prange",
    quick=True))
register_pair("pool", "concurrent.futures.ProcessPoolExecutor with N workers running the "
               "{impl} kernel", functools.partial(ExecutorWorkers, make_executor=_process_pool),
               requires=(registry.needs_process_pools,),
               requires_work=(registry.needs_new_process,), family="pools", quick=("python",))
register_pair("joblib", "joblib.Parallel (loky backend) with N workers running the {impl} "
               "kernel", _JoblibWorkers, requires=(_JOBLIB, registry.needs_process_pools),
               requires_work=(registry.needs_new_process,), family="pools")
