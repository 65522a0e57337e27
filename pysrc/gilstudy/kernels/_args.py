"""Argument checks shared by the pure-Python and the Cython kernels, so both accept the same
values and reject the rest with the same exception and message. Each check names the
kernel, the argument, the rule and the value it got.
"""

import os

from gilstudy._checks import LONG_MAX, integer

__all__ = ["LONG_MAX", "UINT32_MAX", "MAX_THREADS", "countdown_args", "count_primes_args",
           "mandelbrot_args", "nthreads_arg", "default_threads"]

UINT32_MAX = 2**32 - 1
# More OpenMP threads than this is a typo, not a machine; refusing it beats an OpenMP
# runtime that dies trying to create a million threads.
MAX_THREADS = 4096


def countdown_args(n, func: str = "countdown") -> int:
    return integer(func, "n", n)


def count_primes_args(lo, hi, func: str = "count_primes") -> tuple[int, int]:
    lo = integer(func, "lo", lo)
    hi = integer(func, "hi", hi)
    if hi < lo:
        raise ValueError(f"{func}: hi ({hi}) must be >= lo ({lo})")
    return lo, hi


def mandelbrot_args(width, height, max_iter, row_start, row_stop,
                    func: str = "mandelbrot") -> tuple[int, int, int, int, int]:
    width = integer(func, "width", width, minimum=1)
    height = integer(func, "height", height, minimum=1)
    max_iter = integer(func, "max_iter", max_iter, minimum=1, maximum=UINT32_MAX,
                       limit_name="a uint32 count")
    row_start = integer(func, "row_start", row_start)
    if row_start > height:
        raise ValueError(f"{func}: row_start ({row_start}) must be <= height ({height})")
    if row_stop is None:
        row_stop = height
    row_stop = integer(func, "row_stop", row_stop)
    if row_stop > height:
        raise ValueError(f"{func}: row_stop ({row_stop}) must be <= height ({height})")
    if row_stop < row_start:
        raise ValueError(f"{func}: row_stop ({row_stop}) must be >= row_start ({row_start})")
    return width, height, max_iter, row_start, row_stop


def default_threads() -> int:
    """Threads a prange kernel uses when not told: ``OMP_NUM_THREADS`` when it holds a
    count (its first entry, as OpenMP reads a nested list), else the usable cores."""
    from gilstudy.machine import usable_cores

    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) >= 1:
        return min(int(first), MAX_THREADS)
    return usable_cores()


def nthreads_arg(func: str, nthreads) -> int:
    """``nthreads`` of a prange kernel: None means default_threads(); otherwise an int in
    [1, MAX_THREADS]."""
    if nthreads is None:
        return default_threads()
    return integer(func, "nthreads", nthreads, minimum=1, maximum=MAX_THREADS,
                   limit_name="the thread limit")
