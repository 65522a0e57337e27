# Compiled twins of gilstudy.kernels.python: the same names, arguments, results and errors.
# Each kernel checks its arguments while holding the GIL (through gilstudy.kernels._args,
# which the pure-Python twins use too, so both raise the same messages), then runs its whole
# compute loop inside ``with nogil:``, so other Python threads run meanwhile.
# The *_prange kernels split one call's loop over OpenMP threads with prange (dynamic
# schedule); built without OpenMP they run on one thread and build_info()["openmp"] says so.
# The nogil C-level functions are declared in _ckernels.pxd for other Cython modules.
# The module keeps its state per interpreter and declares that each may have its own GIL
# (setup.py: subinterpreters_compatible=own_gil), so it loads in isolated subinterpreters;
# that is also why it uses no typed memoryviews (Cython does not yet support them there)
# and imports no numpy (which cannot load there): images are filled through the buffer
# protocol and made arrays by gilstudy.kernels._image.

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cython.parallel cimport prange

from gilstudy.kernels import _args, _image

cdef extern from "primes_ref.h":
    long gilstudy_count_primes_ref(long lo, long hi) noexcept nogil

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define GILSTUDY_HAS_OPENMP 1
    static int gilstudy_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define GILSTUDY_HAS_OPENMP 0
    static int gilstudy_openmp_max_threads(void) { return 1; }
    #endif
    """
    const char *GILSTUDY_CYTHON_VERSION
    const char *GILSTUDY_COMPILER
    const char *GILSTUDY_CFLAGS
    int GILSTUDY_FREETHREADING_COMPATIBLE
    const char *GILSTUDY_SUBINTERPRETERS_COMPATIBLE
    int GILSTUDY_HAS_OPENMP
    int gilstudy_openmp_max_threads() noexcept nogil


# ---- C level: no Python objects, no GIL, no errors ------------------------------------

cdef long countdown_c(long n) noexcept nogil:
    # A volatile counter forces a load and a store per step, so the C compiler cannot
    # replace the loop by its result: the compiled kernel really does n steps.
    cdef volatile long counter = n
    cdef long steps = 0
    while counter > 0:
        counter = counter - 1
        steps += 1
    return steps


cdef bint is_prime_c(long p) noexcept nogil:
    cdef long d
    if p < 2:
        return False
    if p < 4:
        return True
    if p % 2 == 0:
        return False
    d = 3
    # d <= p / d instead of d * d <= p: it cannot overflow near LONG_MAX.
    while d <= p // d:
        if p % d == 0:
            return False
        d += 2
    return True


cdef long count_primes_c(long lo, long hi) noexcept nogil:
    cdef long count = 0
    cdef long p
    for p in range(lo, hi):
        count += is_prime_c(p)
    return count


cdef unsigned int mandelbrot_point_c(double cr, double ci, unsigned int max_iter) noexcept nogil:
    cdef double zr = 0.0, zi = 0.0, zr2, zi2
    cdef unsigned int n = 0
    while n < max_iter:
        zr2 = zr * zr
        zi2 = zi * zi
        if zr2 + zi2 > 4.0:
            break
        zi = 2.0 * zr * zi + ci
        zr = zr2 - zi2 + cr
        n += 1
    return n


cdef void mandelbrot_rows_c(unsigned int *out, long width, long height, unsigned int max_iter,
                            long row_start, long row_stop) noexcept nogil:
    cdef long x, y
    cdef double ci
    cdef unsigned int *row
    for y in range(row_start, row_stop):
        ci = -1.5 + 3.0 * y / height
        row = out + (y - row_start) * width
        for x in range(width):
            row[x] = mandelbrot_point_c(-2.0 + 3.0 * x / width, ci, max_iter)


# ---- C level, split over OpenMP threads ----------------------------------------------
# Dynamic schedules: the cost of a number (trial division) or a row (escape iterations)
# varies a lot, so threads take the next chunk when they finish one instead of a fixed
# share. Chunks are big enough that taking one (an atomic increment) costs little.

cdef enum:
    PRIMES_CHUNK = 1024        # numbers per chunk: tens of microseconds of work
    COUNTDOWN_CHUNK = 1 << 16  # steps per chunk


cdef long count_primes_prange_c(long lo, long hi, int nthreads) noexcept nogil:
    cdef long count = 0
    cdef long p
    for p in prange(lo, hi, schedule="dynamic", chunksize=PRIMES_CHUNK, num_threads=nthreads):
        count += is_prime_c(p)
    return count


cdef long countdown_prange_c(long n, int nthreads) noexcept nogil:
    # n steps cut into chunks of COUNTDOWN_CHUNK (the last one shorter), counted down in
    # parallel; the steps add up to n, as in countdown_c.
    cdef long chunks = n // COUNTDOWN_CHUNK + (1 if n % COUNTDOWN_CHUNK else 0)
    cdef long steps = 0
    cdef long c, todo
    for c in prange(chunks, schedule="dynamic", num_threads=nthreads):
        todo = n - c * COUNTDOWN_CHUNK
        if todo > COUNTDOWN_CHUNK:
            todo = COUNTDOWN_CHUNK
        steps += countdown_c(todo)
    return steps


cdef void mandelbrot_rows_prange_c(unsigned int *out, long width, long height,
                                   unsigned int max_iter, long row_start, long row_stop,
                                   int nthreads) noexcept nogil:
    cdef long y
    for y in prange(row_start, row_stop, schedule="dynamic", num_threads=nthreads):
        mandelbrot_rows_c(out + (y - row_start) * width, width, height, max_iter, y, y + 1)


# ---- Python level: validate with the GIL, compute without it --------------------------

def countdown(n):
    cdef long steps_to_do = _args.countdown_args(n)
    cdef long steps
    with nogil:
        steps = countdown_c(steps_to_do)
    return steps


def count_primes(lo, hi):
    cdef long clo, chi, count
    clo, chi = _args.count_primes_args(lo, hi)
    with nogil:
        count = count_primes_c(clo, chi)
    return count


def count_primes_reference(lo, hi):
    """count_primes by a hand-written C loop (primes_ref.h): the speed reference for bench/."""
    cdef long clo, chi, count
    clo, chi = _args.count_primes_args(lo, hi, func="count_primes_reference")
    with nogil:
        count = gilstudy_count_primes_ref(clo, chi)
    return count


def mandelbrot(width, height, max_iter, row_start=0, row_stop=None):
    cdef long w, h, r0, r1
    cdef unsigned int iters
    cdef Py_buffer view
    w, h, iters, r0, r1 = _args.mandelbrot_args(width, height, max_iter, row_start, row_stop)
    pixels = _image.new_pixels(r1 - r0, w)
    PyObject_GetBuffer(pixels, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    try:
        with nogil:
            mandelbrot_rows_c(<unsigned int *> view.buf, w, h, iters, r0, r1)
    finally:
        PyBuffer_Release(&view)
    return _image.as_image(pixels, r1 - r0, w)


def countdown_prange(n, nthreads=None):
    """countdown(n) with the steps split over ``nthreads`` OpenMP threads (prange, dynamic
    schedule); returns n, like countdown.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    countdown raises, and TypeError / ValueError / OverflowError for an ``nthreads`` that
    is not an int in [1, 4096].
    """
    cdef long steps_to_do = _args.countdown_args(n, func="countdown_prange")
    cdef int threads = _args.nthreads_arg("countdown_prange", nthreads)
    cdef long steps
    with nogil:
        steps = countdown_prange_c(steps_to_do, threads)
    return steps


def count_primes_prange(lo, hi, nthreads=None):
    """count_primes(lo, hi) with the numbers split over ``nthreads`` OpenMP threads
    (prange, dynamic schedule); the same count.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    count_primes raises, and TypeError / ValueError / OverflowError for an ``nthreads``
    that is not an int in [1, 4096].
    """
    cdef long clo, chi, count
    clo, chi = _args.count_primes_args(lo, hi, func="count_primes_prange")
    cdef int threads = _args.nthreads_arg("count_primes_prange", nthreads)
    with nogil:
        count = count_primes_prange_c(clo, chi, threads)
    return count


def mandelbrot_prange(width, height, max_iter, row_start=0, row_stop=None, nthreads=None):
    """mandelbrot(width, height, max_iter, row_start, row_stop) with the rows split over
    ``nthreads`` OpenMP threads (prange, dynamic schedule); the same array.

    ``nthreads=None`` means OMP_NUM_THREADS when set, else the usable cores. Raises what
    mandelbrot raises, and TypeError / ValueError / OverflowError for an ``nthreads`` that
    is not an int in [1, 4096].
    """
    cdef long w, h, r0, r1
    cdef unsigned int iters
    w, h, iters, r0, r1 = _args.mandelbrot_args(width, height, max_iter, row_start, row_stop,
                                                func="mandelbrot_prange")
    cdef int threads = _args.nthreads_arg("mandelbrot_prange", nthreads)
    cdef Py_buffer view
    pixels = _image.new_pixels(r1 - r0, w)
    PyObject_GetBuffer(pixels, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
    try:
        with nogil:
            mandelbrot_rows_prange_c(<unsigned int *> view.buf, w, h, iters, r0, r1, threads)
    finally:
        PyBuffer_Release(&view)
    return _image.as_image(pixels, r1 - r0, w)


def build_info():
    """Facts of this build: Cython version, compiler and flags, OpenMP, free-threading,
    subinterpreters."""
    return {
        "cython_version": GILSTUDY_CYTHON_VERSION.decode(),
        "compiler": GILSTUDY_COMPILER.decode(),
        "cflags": GILSTUDY_CFLAGS.decode(),
        "openmp": bool(GILSTUDY_HAS_OPENMP),
        "openmp_max_threads": gilstudy_openmp_max_threads(),
        "freethreading_compatible": bool(GILSTUDY_FREETHREADING_COMPATIBLE),
        "subinterpreters_compatible": GILSTUDY_SUBINTERPRETERS_COMPATIBLE.decode(),
    }
