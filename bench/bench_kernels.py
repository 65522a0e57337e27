# Single-threaded speed of each kernel: pure Python, Cython, and for count_primes a plain C
# loop compiled into the extension (the ceiling for the Cython loop). One group per kernel:
#     pytest bench/bench_kernels.py --benchmark-group-by=group
# For the ratios measured interleaved in one run, use `gilstudy kernels`.

import numpy as np
import pytest

from gilstudy import kernels
from gilstudy.kernels import cython as ckernels

COUNTDOWN_N = {"python": 1_000_000, "cython": 100_000_000}
PRIMES = (0, 100_000)
MANDELBROT = (160, 120, 200)


@pytest.mark.benchmark(group="countdown")
@pytest.mark.parametrize("impl", kernels.IMPLS)
def test_countdown(benchmark, impl):
    n = COUNTDOWN_N[impl]
    steps = benchmark(kernels.get("countdown", impl), n)
    assert steps == n
    benchmark.extra_info["ns_per_step"] = benchmark.stats.stats.median / n * 1e9


@pytest.mark.benchmark(group="count_primes")
@pytest.mark.parametrize("impl", [*kernels.IMPLS, "c-reference"])
def test_count_primes(benchmark, impl):
    func = ckernels.count_primes_reference if impl == "c-reference" else kernels.get("count_primes", impl)
    assert benchmark(func, *PRIMES) == 9592


@pytest.mark.benchmark(group="mandelbrot")
@pytest.mark.parametrize("impl", kernels.IMPLS)
def test_mandelbrot(benchmark, impl):
    expected = ckernels.mandelbrot(*MANDELBROT)
    image = benchmark(kernels.get("mandelbrot", impl), *MANDELBROT)
    assert np.array_equal(image, expected)
