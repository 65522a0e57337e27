"""The Numba kernels: JIT-compiled twins of gilstudy.kernels.python.

They take the same arguments, check them with the same code (gilstudy.kernels._args, so
they raise the same errors with the same messages), return the same results (the
mandelbrot image bit for bit) and share the pure-Python docstrings. Each compute loop is
an ``@njit(nogil=True)`` function, so it runs with the GIL released and Python threads
calling it run in parallel, as the Cython kernels do. The ``*_prange`` twins are
``@njit(parallel=True)`` functions whose loop Numba splits over its own thread pool.

Importing this module needs numba (``pip install 'gilstudy[numba]'``); use
``gilstudy.kernels.get(name, "numba")``, which says so when it is missing. Nothing is
compiled at import: each function compiles on its first call (a second or more each), and
no on-disk cache is used, so every process pays that once. :func:`compile_all` compiles
them all at once.

Numba's LLVM would replace countdown's loop by its result, so every read and write of its
counter goes through memory (a store and a load the optimiser must keep), as the Cython
kernel's ``volatile`` counter does: the Numba kernel really does n steps.
"""

import numba  # first: where it is missing, the import error names numba itself
import llvmlite
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils
from numba.extending import intrinsic

from gilstudy.kernels import _args, _image, python

__all__ = ["countdown", "count_primes", "mandelbrot", "countdown_prange", "count_primes_prange",
           "mandelbrot_prange", "compile_all", "is_compiled", "build_info"]

# Iterations a thread takes at a time in the prange twins (Numba's parallel chunk size):
# chunks, not equal shares, because the cost of a number (trial division) or a row (escape
# iterations) varies a lot; the same chunks as the Cython prange kernels' dynamic schedule.
PRIMES_CHUNK = 1024
COUNTDOWN_CHUNK = 1 << 16
ROWS_CHUNK = 1

# Numba's own options: no zero-division checks (the divisors are never zero; the Cython
# kernels are built with cdivision too), and no fast-math, so every floating-point
# operation is rounded on its own and the image equals the pure-Python one bit for bit.
_JIT = dict(nogil=True, error_model="numpy", fastmath=False, cache=False)


@intrinsic
def _through_memory(typingctx, value):
    """``value``, stored to a stack slot and loaded back past an empty assembly statement
    that may have changed memory: the optimiser must keep the store and the load."""

    def codegen(context, builder, signature, args):
        [number] = args
        slot = cgutils.alloca_once(builder, number.type)
        builder.store(number, slot)
        barrier = ir.FunctionType(ir.VoidType(), [slot.type])
        builder.asm(barrier, "", "r,~{memory}", [slot], side_effect=True)
        return builder.load(slot)

    return value(value), codegen


# ---- compiled loops: no Python objects, no GIL --------------------------------------

@njit(**_JIT)
def _countdown_steps(n):
    # Each read of the counter (for the test, for the decrement) and each write goes
    # through memory, as the Cython kernel's volatile counter does.
    counter = n
    steps = 0
    while _through_memory(counter) > 0:
        counter = _through_memory(_through_memory(counter) - 1)
        steps += 1
    return steps


@njit(**_JIT)
def _is_prime(p):
    if p < 2:
        return False
    if p < 4:
        return True
    if p % 2 == 0:
        return False
    d = 3
    # d <= p // d instead of d * d <= p: it cannot overflow near LONG_MAX.
    while d <= p // d:
        if p % d == 0:
            return False
        d += 2
    return True


@njit(**_JIT)
def _count_primes_range(lo, hi):
    count = 0
    for p in range(lo, hi):
        if _is_prime(p):
            count += 1
    return count


@njit(**_JIT)
def _mandelbrot_point(cr, ci, max_iter):
    zr = 0.0
    zi = 0.0
    n = 0
    while n < max_iter:
        zr2 = zr * zr
        zi2 = zi * zi
        if zr2 + zi2 > 4.0:
            break
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
        n += 1
    return n


@njit(**_JIT)
def _mandelbrot_row(out, y, width, height, max_iter):
    ci = -1.5 + 3.0 * y / height
    for x in range(width):
        out[x] = _mandelbrot_point(-2.0 + 3.0 * x / width, ci, max_iter)


@njit(**_JIT)
def _mandelbrot_rows(out, width, height, max_iter, row_start, row_stop):
    for y in range(row_start, row_stop):
        _mandelbrot_row(out[y - row_start], y, width, height, max_iter)


# ---- compiled loops split over Numba's threads ----------------------------------------

@njit(parallel=True, **_JIT)
def _count_primes_parallel(lo, hi):
    count = 0
    for p in prange(lo, hi):
        if _is_prime(p):
            count += 1
    return count


@njit(parallel=True, **_JIT)
def _countdown_parallel(n, chunk):
    # n steps cut into chunks (the last one shorter), counted down in parallel; the steps
    # add up to n, as in _countdown_steps.
    chunks = n // chunk + (1 if n % chunk else 0)
    steps = 0
    for c in prange(chunks):
        steps += _countdown_steps(min(chunk, n - c * chunk))
    return steps


@njit(parallel=True, **_JIT)
def _mandelbrot_parallel(out, width, height, max_iter, row_start, row_stop):
    for y in prange(row_start, row_stop):
        _mandelbrot_row(out[y - row_start], y, width, height, max_iter)


# ---- Python level: validate with the GIL, compute without it --------------------------

def countdown(n):
    return _countdown_steps(_args.countdown_args(n))


def count_primes(lo, hi):
    return _count_primes_range(*_args.count_primes_args(lo, hi))


def _new_image(rows: int, width: int) -> tuple:
    """(the pixel buffer, a writable rows x width uint32 numpy view of it)."""
    pixels = _image.new_pixels(rows, width)
    return pixels, np.frombuffer(pixels, dtype=np.uint32).reshape(rows, width)


def mandelbrot(width, height, max_iter, row_start=0, row_stop=None):
    w, h, iters, r0, r1 = _args.mandelbrot_args(width, height, max_iter, row_start, row_stop)
    pixels, out = _new_image(r1 - r0, w)
    _mandelbrot_rows(out, w, h, iters, r0, r1)
    return _image.as_image(pixels, r1 - r0, w)


# Numba's thread count and chunk size are settings of the calling thread: each prange twin
# sets both for its call and puts them back after, so calls from different threads do not
# disturb each other.

def _threads(func: str, nthreads) -> int:
    """``nthreads`` checked as the Cython prange kernels check it, and against the size of
    Numba's thread pool, which a call cannot exceed."""
    threads = _args.nthreads_arg(func, nthreads)
    limit = numba.config.NUMBA_NUM_THREADS
    if threads > limit:
        raise ValueError(f"{func}: nthreads ({threads}) must be <= the {limit} threads of "
                         "Numba's thread pool (set NUMBA_NUM_THREADS before numba is "
                         "imported for more)")
    return threads


def _in_parallel(threads: int, chunk: int, loop, *args):
    before_threads = numba.get_num_threads()
    numba.set_num_threads(threads)
    before_chunk = numba.set_parallel_chunksize(chunk)
    try:
        return loop(*args)
    finally:
        numba.set_parallel_chunksize(before_chunk)
        numba.set_num_threads(before_threads)


def countdown_prange(n, nthreads=None):
    """countdown(n) with the steps split over ``nthreads`` of Numba's threads (prange, in
    chunks of 65536 steps); returns n, like countdown.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    countdown raises, and TypeError / ValueError / OverflowError for an ``nthreads`` that
    is not an int in [1, 4096] or is more than Numba's thread pool holds
    (``numba.config.NUMBA_NUM_THREADS``, by default the machine's cores).
    """
    steps = _args.countdown_args(n, func="countdown_prange")
    threads = _threads("countdown_prange", nthreads)
    return _in_parallel(threads, 1, _countdown_parallel, steps, COUNTDOWN_CHUNK)


def count_primes_prange(lo, hi, nthreads=None):
    """count_primes(lo, hi) with the numbers split over ``nthreads`` of Numba's threads
    (prange, in chunks of 1024 numbers); the same count.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    count_primes raises, and TypeError / ValueError / OverflowError for an ``nthreads``
    that is not an int in [1, 4096] or is more than Numba's thread pool holds.
    """
    lo, hi = _args.count_primes_args(lo, hi, func="count_primes_prange")
    threads = _threads("count_primes_prange", nthreads)
    return _in_parallel(threads, PRIMES_CHUNK, _count_primes_parallel, lo, hi)


def mandelbrot_prange(width, height, max_iter, row_start=0, row_stop=None, nthreads=None):
    """mandelbrot(width, height, max_iter, row_start, row_stop) with the rows split over
    ``nthreads`` of Numba's threads (prange, a row at a time); the same array.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    mandelbrot raises, and TypeError / ValueError / OverflowError for an ``nthreads`` that
    is not an int in [1, 4096] or is more than Numba's thread pool holds.
    """
    w, h, iters, r0, r1 = _args.mandelbrot_args(width, height, max_iter, row_start, row_stop,
                                                func="mandelbrot_prange")
    threads = _threads("mandelbrot_prange", nthreads)
    pixels, out = _new_image(r1 - r0, w)
    _in_parallel(threads, ROWS_CHUNK, _mandelbrot_parallel, out, w, h, iters, r0, r1)
    return _image.as_image(pixels, r1 - r0, w)


for _name in ("countdown", "count_primes", "mandelbrot"):
    globals()[_name].__doc__ = getattr(python, _name).__doc__
del _name


# ---- compilation and build facts --------------------------------------------------------

# The smallest calls that compile every function for the argument types the kernels pass.
_SMALLEST = {
    "countdown": (0,),
    "count_primes": (0, 0),
    "mandelbrot": (1, 1, 1, 0, 1),
}

def compile_all(parallel: bool = True) -> None:
    """Compile every kernel (and, with ``parallel``, every prange twin, which also starts
    Numba's thread pool) by calling each once on almost no work. Each function compiles
    once per process; later calls cost nothing."""
    for name, args in _SMALLEST.items():
        globals()[name](*args)
        if parallel:
            globals()[f"{name}_prange"](*args, nthreads=1)


def is_compiled(name: str, parallel: bool = False) -> bool:
    """Whether kernel ``name`` (with ``parallel``: its prange twin) has been compiled in
    this process."""
    loops = {"countdown": (_countdown_steps, _countdown_parallel),
             "count_primes": (_count_primes_range, _count_primes_parallel),
             "mandelbrot": (_mandelbrot_rows, _mandelbrot_parallel)}
    return bool(loops[name][parallel].signatures)


def build_info() -> dict:
    """Facts of the Numba in use, for reports: numba's and llvmlite's versions, the size
    of its thread pool, the threading layer (None until a prange kernel has run), and
    whether compiled code is cached on disk (it is not)."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        layer = None
    return {"numba_version": numba.__version__, "llvmlite_version": llvmlite.__version__,
            "num_threads": numba.config.NUMBA_NUM_THREADS, "threading_layer": layer,
            "cache": False}
