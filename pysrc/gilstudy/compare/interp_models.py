# The compare models that run on subinterpreters, each with a GIL of its own (Python 3.14+):
# gilstudy.interpreters' runner (interp-*, one isolated interpreter per worker, fed through
# Dispatch), and the standard library's InterpreterPoolExecutor (interppool-python), its peer.
# On an older Python they are unavailable, with the version they need as the reason.

import functools

from gilstudy.compare import registry
from gilstudy.compare.models import DispatchWorkers, probe_items, register_pair
from gilstudy.compare.workload import Work

__all__ = ["needs_subinterpreters"]


def needs_subinterpreters() -> str | None:
    """A check: this Python has concurrent.interpreters; else the one-line reason, naming
    the version needed and this one."""
    from gilstudy.interpreters import unavailable_reason

    return unavailable_reason()


def _subinterpreters(workload: Work, impl: str, workers: int, results) -> object:
    from gilstudy.interpreters import subinterpreters

    factory, args = workload.consumer_factory(impl)
    return subinterpreters(factory, workers, *args, results=results)


class _InterpreterPoolWorkers:
    """concurrent.futures.InterpreterPoolExecutor with ``workers`` interpreters; items go
    through ``executor.map`` with its defaults (one item per task: the consumer's bound
    ``send`` and the item are pickled into the worker's interpreter, the result back).
    Start-up ends when the pool has answered one probe item per worker. A consumer that
    raises makes ``run`` raise its error (the executor's ExecutionFailed or the exception
    itself); ``close`` shuts the pool down, cancelling what has not started, and waits."""

    def __init__(self, workload: Work, impl: str, workers: int):
        from concurrent.futures import InterpreterPoolExecutor

        self._consumer = workload.consumer(impl)
        self._executor = InterpreterPoolExecutor(workers)
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


register_pair("interp", "N isolated subinterpreters, each with its own GIL "
              "(gilstudy.interpreters.subinterpreters), fed through Dispatch, running the "
              "{impl} kernel", functools.partial(DispatchWorkers, start_fan=_subinterpreters),
              requires=(needs_subinterpreters,), requires_work=(registry.needs_new_process,))
registry.register(registry.Model(
    "interppool-python", "python", "concurrent.futures.InterpreterPoolExecutor with N "
    "interpreters running the python kernel", _InterpreterPoolWorkers,
    requires=(needs_subinterpreters,), requires_work=(registry.needs_new_process,)))
