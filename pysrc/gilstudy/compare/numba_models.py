"""The compare models that run gilstudy's Numba kernels (gilstudy.kernels.numba).

- ``numba-threads``: the ``@njit(nogil=True)`` kernel on N ConsumerThreads fed through
  Dispatch, as threads-cython runs the Cython kernel.
- ``numba-prange``: one call of the kernel's ``@njit(parallel=True)`` twin, whose loop
  Numba splits over N threads of its pool, as prange-cython does with OpenMP.

Numba compiles a function on its first call in a process, and no on-disk cache is used, so
each model compiles its kernel while it starts: the compilation is part of the start-up
of the first worker count that runs it (later counts find the kernel compiled) and never
of the timed work. Where numba cannot load (not installed; no wheel for the free-threaded
build) both models are unavailable, with that as the reason.
"""

import functools
from dataclasses import dataclass
from typing import Iterable

from gilstudy import kernels
from gilstudy.compare import registry
from gilstudy.compare.models import QUEUE_DEPTH, DispatchWorkers, one_at_a_time
from gilstudy.compare.workload import Work, Workload
from gilstudy.consumers import ConsumerThread
from gilstudy.dispatch import Dispatch

__all__ = ["IMPL", "needs_numba", "needs_kernel_workload", "thread_pool_size"]

IMPL = "numba"


def needs_numba() -> str | None:
    """A check: gilstudy's Numba kernels load here; else why not, with the extra to install."""
    return kernels.impl_unavailable_reason(IMPL)


def needs_kernel_workload(workload: Work, impl: str) -> str | None:
    """A workload check: the workload is one of gilstudy's kernels (a user's function has
    no Numba twin here: a Numba function of one's own goes in as ``--nogil``)."""
    if isinstance(workload, Workload):
        return None
    return (f"runs gilstudy's own {impl} kernels, not a function; give a {impl} function as "
            "--nogil to run it on the -nogil models")


def thread_pool_size() -> int:
    """The threads of Numba's pool (NUMBA_NUM_THREADS, by default the machine's cores): the
    most that one parallel call can use."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def _compile(workload: Workload) -> None:
    """Compile the workload's Numba kernel (a call on almost no work), here and now."""
    kernels.get(workload.kernel, IMPL)(*workload.probe_args())


def _numba_threads(workload: Workload, impl: str, workers: int, results) -> Dispatch:
    """The kernel compiled in this thread, then ``workers`` ConsumerThreads running it."""
    _compile(workload)
    return one_at_a_time(_thread_worker)(workload, impl, workers, results)


def _thread_worker(workload: Work, impl: str, results) -> ConsumerThread:
    return ConsumerThread(workload.consumer(impl), maxsize=QUEUE_DEPTH, results=results)


class _PrangeWorkers:
    """One call of the kernel's Numba prange twin over the whole workload, its loop split
    over ``workers`` threads of Numba's pool (the items are not used). Starting compiles
    the twin and starts the pool, with a call on almost no work."""

    def __init__(self, workload: Workload, impl: str, workers: int):
        from gilstudy.kernels import numba as numba_kernels

        self._twin = getattr(numba_kernels, f"{workload.kernel}_prange")
        self._nthreads = workers
        self._twin(*workload.probe_args(), nthreads=workers)

    def run(self, workload: Workload, patience_s: float) -> object:
        return self._twin(*workload.whole_args(), nthreads=self._nthreads)

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class _ThreadPoolModel(registry.Model):
    """A model whose workers are threads of Numba's pool: it runs at the worker counts
    that the pool holds (so it has no oversubscribed row), or at the pool's size when it
    holds none of them. Where numba cannot load (the model cannot run), the counts asked."""

    def worker_counts(self, requested: Iterable[int]) -> list[int]:
        counts = super().worker_counts(requested)
        if needs_numba() is not None:
            return counts
        limit = thread_pool_size()
        return [n for n in counts if n <= limit] or [limit]


registry.register(registry.Model(
    "numba-threads", IMPL, "N ConsumerThreads fed through Dispatch, running the Numba "
    "kernel (@njit(nogil=True)); the first start-up includes its JIT compilation",
    functools.partial(DispatchWorkers, start_fan=_numba_threads), requires=(needs_numba,),
    requires_work=(needs_kernel_workload,), shares_gil=True, family="threads"))
registry.register(_ThreadPoolModel(
    "numba-prange", IMPL, "one call whose loop Numba's prange splits over N threads of its "
    "pool (@njit(parallel=True), in chunks); the first start-up includes its JIT compilation",
    _PrangeWorkers, requires=(needs_numba,), requires_work=(needs_kernel_workload,),
    shares_gil=True, dispatches_items=False, family="prange"))
