# The prange kernels split one call over OpenMP threads; whatever the thread count they
# must give the serial kernels' results and raise their errors, naming themselves.

import numpy as np
import pytest

from gilstudy.kernels import _args
from gilstudy.kernels import cython as ck

THREADS = [1, 2, 3]


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 2), (0, 5000), (9973, 20011)])
def test_count_primes_prange_equals_count_primes(lo, hi, nthreads):
    assert ck.count_primes_prange(lo, hi, nthreads) == ck.count_primes(lo, hi)


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("n", [0, 1, 65535, 65536, 65537, 300_001])
def test_countdown_prange_does_all_n_steps(n, nthreads):
    assert ck.countdown_prange(n, nthreads) == ck.countdown(n) == n


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("rows", [(0, None), (3, 17), (5, 5), (0, 1)])
def test_mandelbrot_prange_equals_mandelbrot(rows, nthreads):
    args = (37, 23, 60, *rows)
    assert np.array_equal(ck.mandelbrot_prange(*args, nthreads=nthreads), ck.mandelbrot(*args))


def test_prange_kernels_default_to_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert _args.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    from gilstudy.machine import usable_cores
    assert _args.default_threads() == usable_cores()
    assert ck.count_primes_prange(0, 1000) == 168


@pytest.mark.parametrize("call, error, message", [
    (lambda: ck.count_primes_prange(10, 3, 2), ValueError,
     r"^count_primes_prange: hi \(3\) must be >= lo \(10\)$"),
    (lambda: ck.count_primes_prange(-1, 3, 2), ValueError,
     r"^count_primes_prange: lo must be >= 0, got -1$"),
    (lambda: ck.countdown_prange(-5, 2), ValueError, r"^countdown_prange: n must be >= 0, got -5$"),
    (lambda: ck.countdown_prange(2.0, 2), TypeError,
     r"^countdown_prange: n must be an int, got float \(2.0\)$"),
    (lambda: ck.mandelbrot_prange(4, 4, 0, nthreads=2), ValueError,
     r"^mandelbrot_prange: max_iter must be >= 1, got 0$"),
    (lambda: ck.mandelbrot_prange(4, 4, 5, 3, 2, nthreads=2), ValueError,
     r"^mandelbrot_prange: row_stop \(2\) must be >= row_start \(3\)$"),
    (lambda: ck.count_primes_prange(0, 10, 0), ValueError,
     r"^count_primes_prange: nthreads must be >= 1, got 0$"),
    (lambda: ck.countdown_prange(10, True), TypeError,
     r"^countdown_prange: nthreads must be an int, got bool \(True\)$"),
    (lambda: ck.mandelbrot_prange(4, 4, 5, nthreads=10**6), OverflowError,
     r"^mandelbrot_prange: nthreads must fit in the thread limit \(<= 4096\), got 1000000$"),
], ids=["hi<lo", "lo<0", "n<0", "n-float", "max_iter", "rows", "nthreads-0", "nthreads-bool",
        "nthreads-huge"])
def test_prange_kernels_reject_bad_arguments_naming_themselves(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_build_info_says_whether_openmp_was_compiled_in():
    assert isinstance(ck.build_info()["openmp"], bool)
