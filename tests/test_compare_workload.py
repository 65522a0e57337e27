# A compare workload split into items and put back together must equal the whole
# computation, for every kernel, whatever order the results come back in.

import random

import numpy as np
import pytest

from gilstudy import kernels
from gilstudy.compare.workload import (answer_summary, default_size, make_workload,
                                       same_answer)
from gilstudy.errors import UnknownKernelError, WrongAnswer

pytestmark = pytest.mark.one_pass

CASES = [("count_primes", 5000, 7), ("countdown", 100_003, 10), ("mandelbrot", 41, 6),
         ("mandelbrot", 5, 5), ("count_primes", 3, 1)]


def run_items(workload, impl="python"):
    kernel = kernels.get(workload.kernel, impl)
    return [(index, kernel(*args)) for index, args in workload.items()]


@pytest.mark.parametrize("kernel, size, items", CASES)
def test_combined_items_equal_the_whole_computation(kernel, size, items):
    workload = make_workload(kernel, size, items)
    whole = kernels.get(kernel, "cython")(*workload.whole_args())
    assert same_answer(workload.combine(run_items(workload, "cython")), whole)


@pytest.mark.parametrize("kernel, size, items", CASES)
def test_results_combine_in_index_order_whatever_order_they_arrive_in(kernel, size, items):
    workload = make_workload(kernel, size, items)
    results = run_items(workload, "cython")
    expected = workload.combine(results)
    random.Random(7).shuffle(results)
    assert same_answer(workload.combine(results), expected)


def test_mandelbrot_items_are_bands_of_rows_stacked_into_the_image():
    workload = make_workload("mandelbrot", 12, 4)
    assert [args[3:] for _, args in workload.items()] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    image = workload.combine(run_items(workload))
    assert image.shape == (12, 12)
    assert np.array_equal(image, kernels.get("mandelbrot")(12, 12, 200))


def test_countdown_items_share_the_steps_equally():
    workload = make_workload("countdown", 10, 4)
    assert [args for _, args in workload.items()] == [(2,), (3,), (2,), (3,)]
    assert workload.combine(run_items(workload)) == 10


def test_combine_rejects_a_missing_or_repeated_item():
    workload = make_workload("count_primes", 100, 4)
    results = run_items(workload)
    with pytest.raises(WrongAnswer, match=r"^count_primes: expected one result for each of the "
                       r"4 items \(indexes 0\.\.3\), got 3 results for 3 distinct indexes$"):
        workload.combine(results[:3])
    with pytest.raises(WrongAnswer, match="got 4 results for 3 distinct indexes"):
        workload.combine(results[:3] + results[:1])


def test_defaults_are_the_kernel_default_size_and_64_items():
    workload = make_workload("countdown")
    assert (workload.size, workload.items_count) == (default_size("countdown"), 64)


@pytest.mark.parametrize("args, error, message", [
    (("nope", 10, 2), UnknownKernelError,
     r"^unknown kernel 'nope'; choose one of: countdown, count_primes, mandelbrot$"),
    (("count_primes", 0, 2), ValueError, r"^count_primes: size must be >= 1, got 0$"),
    (("count_primes", 10, 0), ValueError, r"^count_primes: items must be >= 1, got 0$"),
    (("count_primes", 2.5, 2), TypeError, r"^count_primes: size must be an int, got float \(2.5\)$"),
    (("mandelbrot", 4, 5), ValueError,
     r"^mandelbrot: items \(5\) must be <= size \(4\), so that every item has some work$"),
    (("countdown", 2**70, 2), OverflowError, r"^countdown: n must fit in a C long"),
], ids=["kernel", "size-0", "items-0", "size-float", "items>size", "size-huge"])
def test_make_workload_rejects_what_the_kernel_would_reject(args, error, message):
    with pytest.raises(error, match=message):
        make_workload(*args)


def test_same_answer_compares_arrays_by_shape_dtype_and_values():
    a = np.arange(6, dtype=np.uint32).reshape(2, 3)
    assert same_answer(a, a.copy())
    assert not same_answer(a, a.reshape(3, 2))
    assert not same_answer(a, a.astype(np.int64))
    assert not same_answer(a, 15)
    assert same_answer(25, 25) and not same_answer(25, 26)


def test_answer_summary_is_small_and_json_friendly():
    assert answer_summary(25) == 25
    summary = answer_summary(np.ones((2, 3), dtype=np.uint32))
    assert summary["shape"] == [2, 3] and summary["sum"] == 6 and len(summary["sha256"]) == 16
