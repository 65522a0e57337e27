"""One compare workload: work cut into items that every execution model runs, and the way the
items' results combine into the answer that all models must agree on. Work is what every
workload offers the models and the runner; Workload is a built-in kernel over a size, cut
by the rules of its _KernelWork entry (a user's own function is compare/function.py).
"""

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from gilstudy import _checks, kernels, machine
from gilstudy.errors import UnknownKernelError, WrongAnswer
from gilstudy.kernels import _args
from gilstudy.kernels.work import KernelConsumer

__all__ = ["Work", "Workload", "Probe", "make_workload", "DEFAULT_ITEMS", "default_size",
           "answer_summary", "same_answer", "digest", "combine_indexed"]

# 64 items: enough for Dispatch / dynamic scheduling to balance uneven items over up to
# a few dozen workers, few enough that per-item overhead stays small next to the work.
DEFAULT_ITEMS = 64

# Mandelbrot images are square, size x size pixels, at this iteration limit.
MANDELBROT_MAX_ITER = 200


@dataclass(frozen=True)
class _KernelWork:
    """How one kernel's work is sized, split and put back together."""

    size_means: str                                     # for help texts and reports
    default_size: int
    whole_args: Callable[[int], tuple]                  # args of one call doing all the work
    item_args: Callable[[int, int, int], tuple]         # (size, items, index) -> args
    combine: Callable[[list], object]                   # item results in index order -> answer
    validate: Callable[[tuple], object]                 # raises as the kernel would
    probe_args: tuple                                   # almost no work: to see a worker answer
    answer_bytes: Callable[[int], int] = lambda size: 0  # memory the answer takes

    def check_memory(self, kernel: str, size: int) -> None:
        """ValueError when the answer at ``size`` cannot fit in this machine's memory: the
        answer, the items' results it is combined from, and one pass's copy of each."""
        nbytes = self.answer_bytes(size)
        if nbytes:
            machine.check_memory(kernel, f"size {size} (a {size} x {size} uint32 image, held "
                                 "about 3 times over)", 3 * nbytes)


def _bounds(size: int, items: int, index: int) -> tuple[int, int]:
    return size * index // items, size * (index + 1) // items


def _share(size: int, items: int, index: int) -> tuple[int]:
    lo, hi = _bounds(size, items, index)
    return (hi - lo,)


# Default sizes: the pure-Python kernel takes about 0.7 s on one core of the reference
# machine (2 vCPUs of a shared AMD EPYC host, Python 3.11), so the whole default
# `gilstudy compare` (11 models at workers 1, 2, 4, repeat 5: about 50 runs' worth of the
# serial pure-Python time, plus start-ups) takes about a minute there. Measured with
# `gilstudy compare --kernel K --models serial-python`: count_primes 500_000 -> 0.68 s,
# countdown 24_000_000 -> 0.74 s, mandelbrot 400 -> 0.67 s; the default count_primes
# run of the 7 models available without gilstudy.consumers took 32 s in all.
_WORK = {
    "count_primes": _KernelWork(
        size_means="count the primes below SIZE; items are equal ranges of numbers",
        default_size=500_000,
        whole_args=lambda size: (0, size),
        item_args=_bounds,
        combine=sum,
        validate=lambda args: _args.count_primes_args(*args),
        probe_args=(0, 0),
    ),
    "countdown": _KernelWork(
        size_means="SIZE countdown steps in all, shared equally by the items",
        default_size=24_000_000,
        whole_args=lambda size: (size,),
        item_args=_share,
        combine=sum,
        validate=lambda args: _args.countdown_args(*args),
        probe_args=(0,),
    ),
    "mandelbrot": _KernelWork(
        size_means=f"a SIZE x SIZE image at {MANDELBROT_MAX_ITER} iterations; "
                   "items are bands of rows",
        default_size=400,
        whole_args=lambda size: (size, size, MANDELBROT_MAX_ITER, 0, size),
        item_args=lambda size, items, index: (size, size, MANDELBROT_MAX_ITER,
                                              *_bounds(size, items, index)),
        combine=lambda bands: np.concatenate(bands, axis=0),
        validate=lambda args: _args.mandelbrot_args(*args),
        probe_args=(1, 1, 1, 0, 1),
        answer_bytes=lambda size: 4 * size * size,
    ),
}


def _work(kernel: str) -> _KernelWork:
    if kernel not in _WORK:
        raise UnknownKernelError(
            f"unknown kernel {kernel!r}; choose one of: {', '.join(kernels.NAMES)}")
    return _WORK[kernel]


def default_size(kernel: str) -> int:
    """The size `gilstudy compare` uses for ``kernel`` when not told (about a second of
    pure-Python work on one core)."""
    return _work(kernel).default_size


def size_means(kernel: str) -> str:
    return _work(kernel).size_means


class Work:
    """What every model and the runner need of a workload; Workload (a kernel over a size)
    and compare.function.FunctionWorkload (a user's function over inputs) are the two.

    ``items()`` are ``(index, args)`` pairs; ``consumer_factory(impl)`` is the picklable
    ``(factory, args)`` that builds, in any process, the consumer turning an item into
    ``(index, result)``; ``combine()`` puts the results back together. ``impl`` is
    "python" or "cython" (a model's registry entry says which); ``impl_label(impl)`` is how
    rows name it for this workload, and ``impl_reason(impl)`` says why this workload has
    no such implementation (None when it has). ``importable_reason(impl)`` says why a
    worker in a new process could not rebuild the consumer (None when it can).
    """

    title: str = ""
    items_count: int = 0

    def items(self) -> list[tuple[int, tuple]]:
        raise NotImplementedError

    def combine(self, results: Iterable[tuple[int, object]]) -> object:
        raise NotImplementedError

    def consumer_factory(self, impl: str) -> tuple[Callable, tuple]:
        raise NotImplementedError

    def consumer(self, impl: str):
        """The consumer of ``impl`` built here: ``factory(*args)``."""
        factory, args = self.consumer_factory(impl)
        return factory(*args)

    def probe_args(self):
        """The args of an item that does almost nothing: sent to a new worker to see that it
        is ready, and in bulk to measure what handing over one item costs (probe())."""
        raise NotImplementedError

    def probe(self, count: int) -> "Probe":
        """``count`` items of probe_args(), for the same consumers: their time per item is
        a model's dispatch cost."""
        return Probe(self, count)

    def parallel_call(self, impl: str) -> Callable[[int], object] | None:
        """A call doing the whole work at once on N threads (a prange twin), or None."""
        return None

    def impl_label(self, impl: str) -> str:
        return impl

    # Whether the "python" implementation holds the GIL all along (so that threads cannot
    # help it under a GIL): true of the pure-Python kernels, not known of a user's function.
    python_holds_gil = True

    def impl_words(self, impl: str) -> str:
        """The implementation in a sentence: 'the pure-Python kernel'."""
        return {"python": "the pure-Python kernel", "cython": "the compiled kernel",
                "numba": "the Numba kernel"}[impl]

    def impl_reason(self, impl: str) -> str | None:
        return None

    def importable_reason(self, impl: str) -> str | None:
        return None

    def mismatch(self, answer, expected, reference: str) -> str | None:
        """None when ``answer`` equals ``expected`` (the answer of model ``reference``),
        else what differs, in words."""
        if same_answer(answer, expected):
            return None
        return f"got {answer_summary(answer)!r}, {reference} got {answer_summary(expected)!r}"

    def summary(self, answer) -> object:
        """A short, JSON-friendly form of an answer, equal under every interpreter."""
        return answer_summary(answer)

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self, answer) -> dict:
        """The JSON form of the workload (the ``workload`` key of a compare document)."""
        raise NotImplementedError

    def spec(self) -> dict:
        """Keyword arguments of make_work() that rebuild this workload in another
        interpreter (gilstudy compare --python)."""
        raise NotImplementedError


def combine_indexed(owner: str, count: int, results: Iterable[tuple[int, object]]) -> list:
    """Item results in index order from ``(index, result)`` pairs in any order; WrongAnswer
    unless there is exactly one result for every index 0 .. count - 1 (a model that loses or
    repeats items computed a wrong answer)."""
    pairs = list(results)
    by_index = dict(pairs)
    if len(pairs) != count or sorted(by_index) != list(range(count)):
        raise WrongAnswer(
            f"{owner}: expected one result for each of the {count} items "
            f"(indexes 0..{count - 1}), got {len(pairs)} results for "
            f"{len(by_index)} distinct indexes")
    return [by_index[i] for i in range(count)]


class Probe(Work):
    """``count`` items that do almost nothing, for the consumers of ``work``: the time per
    item of a pass over them is what a model spends handing over one item and getting its
    result back. Their answer is the number of items."""

    def __init__(self, work: Work, count: int):
        self.work = work
        self.items_count = _checks.positive_int("probe", "count", count)
        self.title = f"{work.title} probe"
        self._items = [(i, work.probe_args()) for i in range(count)]

    def items(self) -> list[tuple[int, tuple]]:
        return list(self._items)

    def combine(self, results) -> int:
        return len(combine_indexed(self.title, self.items_count, results))

    def consumer_factory(self, impl: str):
        return self.work.consumer_factory(impl)

    def probe_args(self):
        return self.work.probe_args()

    def describe(self) -> str:
        return f"{self.items_count} probe items of {self.work.describe()}"


class Workload(Work):
    """Kernel ``kernel`` over ``size``, split into ``items`` work items.

    Build it with make_workload(), which checks the numbers. ``items()`` gives the
    ``(index, args)`` pairs a KernelConsumer takes; ``combine()`` turns the ``(index,
    result)`` pairs back into the answer, whatever order they came back in.

    >>> w = make_workload("count_primes", 100, 4)
    >>> w.items()[1]
    (1, (25, 50))
    >>> w.combine([(i, kernels.get("count_primes")(*args)) for i, args in w.items()])
    25
    """

    def __init__(self, kernel: str, size: int, items_count: int, item_list: tuple):
        self.kernel = kernel
        self.title = kernel
        self.size = size
        self.items_count = items_count
        self._item_list = item_list

    def __repr__(self) -> str:
        return f"Workload({self.kernel!r}, size={self.size}, items={self.items_count})"

    def items(self) -> list[tuple[int, tuple]]:
        """The work items, ``(index, args)`` with index 0 .. items_count - 1."""
        return list(self._item_list)

    def whole_args(self) -> tuple:
        """Arguments of one kernel call that does all the work at once (for models that
        split the loop themselves, such as prange)."""
        return _work(self.kernel).whole_args(self.size)

    def probe_args(self) -> tuple:
        return _work(self.kernel).probe_args

    def consumer_factory(self, impl: str) -> tuple[Callable, tuple]:
        return KernelConsumer, (self.kernel, impl)

    def parallel_call(self, impl: str) -> Callable[[int], object] | None:
        """The kernel's prange twin over the whole work, as a function of the thread
        count: the compiled kernels have one, the pure-Python ones not."""
        if impl != "cython":
            return None
        from gilstudy.kernels import cython

        twin = getattr(cython, f"{self.kernel}_prange")
        args = self.whole_args()
        return lambda nthreads: twin(*args, nthreads)

    def combine(self, results: Iterable[tuple[int, object]]) -> object:
        """The answer from the items' ``(index, result)`` pairs, in any order.

        Raises gilstudy.errors.WrongAnswer unless there is exactly one result for every
        item: a model that loses or repeats items computed a wrong answer.
        """
        return _work(self.kernel).combine(combine_indexed(self.kernel, self.items_count,
                                                           results))

    def describe(self) -> str:
        args = ", ".join(map(str, self.whole_args()))
        return f"{self.kernel}({args}) in {self.items_count} items"

    def to_dict(self, answer) -> dict:
        return {"kind": "kernel", "name": self.kernel, "size": self.size,
                "size_means": size_means(self.kernel), "items": self.items_count,
                "whole_args": list(self.whole_args()), "answer": answer_summary(answer)}

    def spec(self) -> dict:
        return {"kernel": self.kernel, "size": self.size, "items": self.items_count}


def make_workload(kernel: str, size: int | None = None, items: int | None = None) -> Workload:
    """A checked Workload; ``None`` picks the default size or item count.

    Raises UnknownKernelError for an unknown kernel, and the kernel's own TypeError,
    ValueError or OverflowError for a size it rejects; ValueError if ``items`` is below 1
    or above ``size`` (every item must have some work), or if the answer at that size
    cannot fit in this machine's memory (a mandelbrot image), saying how much it needs.
    """
    work = _work(kernel)
    size = work.default_size if size is None else size
    items = DEFAULT_ITEMS if items is None else items
    size = _checks.positive_int(kernel, "size", size)
    items = _checks.positive_int(kernel, "items", items)
    work.validate(work.whole_args(size))
    work.check_memory(kernel, size)
    if items > size:
        raise ValueError(f"{kernel}: items ({items}) must be <= size ({size}), so that every "
                         "item has some work")
    item_list = tuple((i, work.item_args(size, items, i)) for i in range(items))
    return Workload(kernel, size, items, item_list)


def same_answer(a, b) -> bool:
    """Whether two answers are equal: numbers by value, arrays element by element with the
    same shape and dtype (``numpy.array_equal``), lists, tuples and dicts element by
    element (so a list of arrays compares too)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same_answer(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except (ValueError, TypeError):  # an object whose == gives no single truth value
        return False


def answer_summary(answer) -> object:
    """A short, JSON-friendly form of an answer: the number itself, or for an array its
    shape, dtype, sum and the first 16 hex digits of the SHA-256 of its bytes."""
    if isinstance(answer, np.ndarray):
        data = np.ascontiguousarray(answer)
        return {"shape": list(data.shape), "dtype": str(data.dtype), "sum": int(data.sum()),
                "sha256": hashlib.sha256(data.tobytes()).hexdigest()[:16]}
    return answer


def digest(value) -> str:
    """The first 16 hex digits of a SHA-256 over a canonical text of ``value``: lists,
    tuples and dicts element by element, arrays by shape, dtype and bytes, anything else
    by repr(). Equal values give equal digests under every interpreter."""
    hasher = hashlib.sha256()

    def feed(obj) -> None:
        if isinstance(obj, np.ndarray):
            data = np.ascontiguousarray(obj)
            hasher.update(f"array{data.shape}{data.dtype}:".encode())
            hasher.update(data.tobytes())
        elif isinstance(obj, (list, tuple)):
            hasher.update(f"{type(obj).__name__}[{len(obj)}](".encode())
            for element in obj:
                feed(element)
            hasher.update(b")")
        elif isinstance(obj, dict):
            hasher.update(f"dict[{len(obj)}](".encode())
            for key, element in obj.items():
                feed(key)
                feed(element)
            hasher.update(b")")
        else:
            hasher.update(f"{type(obj).__name__}:{obj!r};".encode())

    feed(value)
    return hasher.hexdigest()[:16]
