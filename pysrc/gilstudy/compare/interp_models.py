"""The compare models that run on subinterpreters, each with a GIL of its own (Python 3.14+):
gilstudy.interpreters' runner (``interp-*``, one isolated interpreter per worker, fed through
Dispatch), and the standard library's InterpreterPoolExecutor (interppool-python), its peer.
On an older Python they are unavailable, with the version they need as the reason.
"""

import functools
import sys

from gilstudy.compare import registry
from gilstudy.compare.models import DispatchWorkers, ExecutorWorkers, register_pair
from gilstudy.compare.workload import Work

__all__ = ["needs_subinterpreters", "needs_consumer_without_numpy"]


def needs_subinterpreters() -> str | None:
    """A check: this Python has concurrent.interpreters; else the one-line reason, naming
    the version needed and this one."""
    from gilstudy.interpreters import unavailable_reason

    return unavailable_reason()


def needs_consumer_without_numpy(workload: Work, impl: str) -> str | None:
    """A workload check: the workload's consumer can be built in a subinterpreter, where
    numpy cannot load. The built-in kernels' consumer can; a user's function runs through a
    consumer of gilstudy.compare, which imports numpy."""
    factory, _ = workload.consumer_factory(impl)
    if factory.__module__.split(".")[:2] == ["gilstudy", "compare"]:
        return (f"its consumer, {factory.__module__}.{factory.__qualname__}, is part of "
                "gilstudy.compare, which imports numpy, and numpy cannot be imported in a "
                "subinterpreter")
    return None


def _subinterpreters(workload: Work, impl: str, workers: int, results) -> object:
    from gilstudy.interpreters import subinterpreters

    factory, args = workload.consumer_factory(impl)
    return subinterpreters(factory, workers, *args, results=results)


def _interpreter_pool(workers: int) -> object:
    """concurrent.futures.InterpreterPoolExecutor with ``workers`` interpreters, each of
    which first takes this one's sys.path, as a spawned process does (a subinterpreter
    starts from the process's initial one), so that it finds the consumer's module wherever
    this process found it. Each task pickles the consumer's bound ``send`` and the item
    into the worker's interpreter, and the result back."""
    from concurrent.futures import InterpreterPoolExecutor

    # exec and a string: both cross into a new interpreter as they are, unlike a function
    # of gilstudy.compare, whose import would need numpy there.
    return InterpreterPoolExecutor(
        workers, initializer=exec, initargs=(f"import sys; sys.path[:] = {sys.path!r}",))


register_pair("interp", "N isolated subinterpreters, each with its own GIL "
              "(gilstudy.interpreters.subinterpreters), fed through Dispatch, running the "
              "{impl} kernel", functools.partial(DispatchWorkers, start_fan=_subinterpreters),
              requires=(needs_subinterpreters,),
              requires_work=(registry.needs_new_process, needs_consumer_without_numpy),
              family="interpreters")
registry.register(registry.Model(
    "interppool-python", "python", "concurrent.futures.InterpreterPoolExecutor with N "
    "interpreters running the python kernel",
    functools.partial(ExecutorWorkers, make_executor=_interpreter_pool),
    requires=(needs_subinterpreters,),
    requires_work=(registry.needs_new_process, needs_consumer_without_numpy),
    family="interpreters"))
