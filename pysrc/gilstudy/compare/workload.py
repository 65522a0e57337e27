# One compare workload: a kernel and a size, cut into work items that every execution model
# runs, and the way the items' results combine into the answer that all models must agree
# on. Each kernel's splitting rules live in one _KernelWork entry of _WORK.

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from gilstudy import _checks, kernels
from gilstudy.errors import UnknownKernelError, WrongAnswer
from gilstudy.kernels import _args

__all__ = ["Workload", "make_workload", "DEFAULT_ITEMS", "default_size", "answer_summary",
           "same_answer"]

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


@dataclass(frozen=True)
class Workload:
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

    kernel: str
    size: int
    items_count: int
    _item_list: tuple = field(repr=False, compare=False, default=())

    def items(self) -> list[tuple[int, tuple]]:
        """The work items, ``(index, args)`` with index 0 .. items_count - 1."""
        return list(self._item_list)

    def whole_args(self) -> tuple:
        """Arguments of one kernel call that does all the work at once (for models that
        split the loop themselves, such as prange)."""
        return _work(self.kernel).whole_args(self.size)

    def probe_args(self) -> tuple:
        """Arguments of a kernel call that does almost nothing: sent to a new worker to see
        that it is ready."""
        return _work(self.kernel).probe_args

    def combine(self, results: Iterable[tuple[int, object]]) -> object:
        """The answer from the items' ``(index, result)`` pairs, in any order.

        Raises gilstudy.errors.WrongAnswer unless there is exactly one result for every
        item: a model that loses or repeats items computed a wrong answer.
        """
        pairs = list(results)
        by_index = dict(pairs)
        if len(pairs) != self.items_count or sorted(by_index) != list(range(self.items_count)):
            raise WrongAnswer(
                f"{self.kernel}: expected one result for each of the {self.items_count} items "
                f"(indexes 0..{self.items_count - 1}), got {len(pairs)} results for "
                f"{len(by_index)} distinct indexes")
        return _work(self.kernel).combine([by_index[i] for i in range(self.items_count)])

    def describe(self) -> str:
        args = ", ".join(map(str, self.whole_args()))
        return f"{self.kernel}({args}) in {self.items_count} items"


def make_workload(kernel: str, size: int | None = None, items: int | None = None) -> Workload:
    """A checked Workload; ``None`` picks the default size or item count.

    Raises UnknownKernelError for an unknown kernel, and the kernel's own TypeError,
    ValueError or OverflowError for a size it rejects; ValueError if ``items`` is below 1
    or above ``size`` (every item must have some work).
    """
    work = _work(kernel)
    size = work.default_size if size is None else size
    items = DEFAULT_ITEMS if items is None else items
    size = _checks.positive_int(kernel, "size", size)
    items = _checks.positive_int(kernel, "items", items)
    work.validate(work.whole_args(size))
    if items > size:
        raise ValueError(f"{kernel}: items ({items}) must be <= size ({size}), so that every "
                         "item has some work")
    item_list = tuple((i, work.item_args(size, items, i)) for i in range(items))
    return Workload(kernel=kernel, size=size, items_count=items, _item_list=item_list)


def same_answer(a, b) -> bool:
    """Whether two answers are equal: numbers by value, arrays element by element with the
    same shape (``numpy.array_equal``)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    return bool(a == b)


def answer_summary(answer) -> object:
    """A short, JSON-friendly form of an answer: the number itself, or for an array its
    shape, dtype, sum and the first 16 hex digits of the SHA-256 of its bytes."""
    if isinstance(answer, np.ndarray):
        data = np.ascontiguousarray(answer)
        return {"shape": list(data.shape), "dtype": str(data.dtype), "sum": int(data.sum()),
                "sha256": hashlib.sha256(data.tobytes()).hexdigest()[:16]}
    return answer
