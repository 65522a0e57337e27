"""The compiled kernels (pyx/gilstudy/kernels/_ckernels.pyx): the same names, arguments,
results, errors and docstrings as gilstudy.kernels.python, but each runs its compute loop
with the GIL released, so threads calling them run in parallel. The ``*_prange`` twins split
one call's loop over OpenMP threads themselves (see build_info()["openmp"]).
"""

from gilstudy.kernels import _ckernels, python

__all__ = ["countdown", "count_primes", "mandelbrot", "count_primes_reference", "build_info",
           "countdown_prange", "count_primes_prange", "mandelbrot_prange"]

countdown = _ckernels.countdown
count_primes = _ckernels.count_primes
mandelbrot = _ckernels.mandelbrot
count_primes_reference = _ckernels.count_primes_reference
build_info = _ckernels.build_info
countdown_prange = _ckernels.countdown_prange
count_primes_prange = _ckernels.count_primes_prange
mandelbrot_prange = _ckernels.mandelbrot_prange

for _name in ("countdown", "count_primes", "mandelbrot"):
    globals()[_name].__doc__ = getattr(python, _name).__doc__
del _name
