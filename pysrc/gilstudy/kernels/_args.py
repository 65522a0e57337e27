# Argument checks shared by the pure-Python and the Cython kernels, so both accept the same
# values and reject the rest with the same exception and message. Each check names the
# kernel, the argument, the rule and the value it got.

import ctypes
import operator

__all__ = ["LONG_MAX", "UINT32_MAX", "countdown_args", "count_primes_args", "mandelbrot_args"]

LONG_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1
UINT32_MAX = 2**32 - 1


def integer(func: str, name: str, value, minimum: int = 0, maximum: int = LONG_MAX,
            limit_name: str = "a C long") -> int:
    """Return ``value`` as an int in [minimum, maximum], or raise.

    Anything with ``__index__`` counts as an integer (numpy integers do), except bool: a
    flag passed where a count belongs is a mistake, never 0 or 1.
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{func}: {name} must be an int, got {type(value).__name__} ({value!r})")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise OverflowError(f"{func}: {name} must fit in {limit_name} (<= {maximum}), got {value}")
    return value


def countdown_args(n) -> int:
    return integer("countdown", "n", n)


def count_primes_args(lo, hi, func: str = "count_primes") -> tuple[int, int]:
    lo = integer(func, "lo", lo)
    hi = integer(func, "hi", hi)
    if hi < lo:
        raise ValueError(f"{func}: hi ({hi}) must be >= lo ({lo})")
    return lo, hi


def mandelbrot_args(width, height, max_iter, row_start, row_stop) -> tuple[int, int, int, int, int]:
    width = integer("mandelbrot", "width", width, minimum=1)
    height = integer("mandelbrot", "height", height, minimum=1)
    max_iter = integer("mandelbrot", "max_iter", max_iter, minimum=1, maximum=UINT32_MAX,
                       limit_name="a uint32 count")
    row_start = integer("mandelbrot", "row_start", row_start)
    if row_start > height:
        raise ValueError(f"mandelbrot: row_start ({row_start}) must be <= height ({height})")
    if row_stop is None:
        row_stop = height
    row_stop = integer("mandelbrot", "row_stop", row_stop)
    if row_stop > height:
        raise ValueError(f"mandelbrot: row_stop ({row_stop}) must be <= height ({height})")
    if row_stop < row_start:
        raise ValueError(f"mandelbrot: row_stop ({row_stop}) must be >= row_start ({row_start})")
    return width, height, max_iter, row_start, row_stop
