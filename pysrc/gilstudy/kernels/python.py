"""The pure-Python kernels: the GIL-bound baseline. Their compiled twins in
gilstudy.kernels.cython take the same arguments, compute the same results bit for bit,
raise the same errors, and share these docstrings. Nothing here imports numpy, so they
run where it cannot load, such as an isolated subinterpreter.
"""

import array

from gilstudy.kernels import _args, _image

__all__ = ["countdown", "count_primes", "mandelbrot"]


def countdown(n: int) -> int:
    """Decrement a counter from ``n`` to zero, one step at a time; return the steps done (n).

    The classic GIL benchmark: pure loop overhead, no memory traffic.

    Raises TypeError if ``n`` is not an int (bool included), ValueError if it is negative,
    OverflowError if it does not fit in a C long.

    >>> countdown(1000)
    1000
    """
    counter = _args.countdown_args(n)
    steps = 0
    while counter > 0:
        counter -= 1
        steps += 1
    return steps


def _is_prime(p: int) -> bool:
    if p < 2:
        return False
    if p < 4:
        return True
    if p % 2 == 0:
        return False
    d = 3
    while d <= p // d:
        if p % d == 0:
            return False
        d += 2
    return True


def count_primes(lo: int, hi: int) -> int:
    """Count the primes p with lo <= p < hi by trial division up to sqrt(p).

    Deliberately per-number CPU work (no sieve), so a range splits into independent
    work items of similar cost.

    Raises TypeError for non-int bounds, ValueError if ``lo`` is negative or ``hi < lo``,
    OverflowError if a bound does not fit in a C long.

    >>> count_primes(0, 100)
    25
    """
    lo, hi = _args.count_primes_args(lo, hi)
    count = 0
    for p in range(lo, hi):
        if _is_prime(p):
            count += 1
    return count


def _mandelbrot_point(cr: float, ci: float, max_iter: int) -> int:
    zr = zi = 0.0
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


def mandelbrot(width: int, height: int, max_iter: int, row_start: int = 0,
               row_stop: int | None = None) -> "numpy.ndarray":
    """Escape-iteration counts of the Mandelbrot set over [-2, 1] x [-1.5, 1.5].

    Returns rows [row_start, row_stop) (``row_stop=None`` means ``height``) of a
    ``width`` x ``height`` image as a numpy uint32 array of shape (rows, width); pixel
    (x, y) samples c = (-2 + 3x/width) + (-1.5 + 3y/height)i and holds the number of
    iterations, at most ``max_iter``, before ``|z| > 2``. Rows computed separately equal the
    same rows of the whole image, so the image splits across workers by rows. Where numpy
    cannot be imported (an isolated subinterpreter) it returns a
    gilstudy.kernels._image.PortableImage of the same pixels, which pickles into this array.

    Raises TypeError for non-int arguments, ValueError for width, height or max_iter below
    1 or rows outside [0, height], OverflowError for values past a C long (uint32 for
    max_iter).

    >>> mandelbrot(4, 2, 50).tolist()
    [[1, 2, 2, 2], [50, 50, 50, 50]]
    """
    width, height, max_iter, row_start, row_stop = _args.mandelbrot_args(
        width, height, max_iter, row_start, row_stop)
    pixels = _image.new_pixels(row_stop - row_start, width)
    for y in range(row_start, row_stop):
        ci = -1.5 + 3.0 * y / height
        start = (y - row_start) * width
        pixels[start:start + width] = array.array(_image.UINT32_CODE, [
            _mandelbrot_point(-2.0 + 3.0 * x / width, ci, max_iter) for x in range(width)
        ])
    return _image.as_image(pixels, row_stop - row_start, width)
