# Behaviour of the kernels: both implementations give the same answers, the known values,
# split images equal whole ones, and bad arguments get the same clear errors in both.

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gilstudy import kernels
from gilstudy.errors import UnknownKernelError
from gilstudy.kernels import _args, _image
from gilstudy.kernels import cython as ckernels
from gilstudy.kernels import python as pykernels
from gilstudy.kernels.work import KernelConsumer

LONG_MAX = _args.LONG_MAX


def test_names_lists_every_kernel_in_both_implementations():
    assert kernels.NAMES == ("countdown", "count_primes", "mandelbrot")
    for name in kernels.NAMES:
        assert callable(kernels.get(name, "python"))
        assert callable(kernels.get(name, "cython"))


def test_get_defaults_to_the_python_implementation():
    assert kernels.get("countdown") is pykernels.countdown


@pytest.mark.parametrize("name, impl, message", [
    ("nope", "python", r"^unknown kernel 'nope'; choose one of: countdown, count_primes, mandelbrot$"),
    ("countdown", "rust", r"^unknown kernel implementation 'rust'; choose one of: python, cython, numba$"),
])
def test_get_rejects_unknown_choices_naming_the_valid_ones(name, impl, message):
    with pytest.raises(UnknownKernelError, match=message) as caught:
        kernels.get(name, impl)
    assert isinstance(caught.value, LookupError)


def test_twins_share_docstrings():
    for name in kernels.NAMES:
        assert getattr(ckernels, name).__doc__ == getattr(pykernels, name).__doc__
        assert getattr(pykernels, name).__doc__


def test_known_values(impl):
    count_primes = kernels.get("count_primes", impl)
    assert count_primes(0, 100) == 25
    assert count_primes(0, 10**5) == 9592
    assert count_primes(7919, 7920) == 1
    assert count_primes(10, 10) == 0
    assert kernels.get("countdown", impl)(12345) == 12345
    assert kernels.get("countdown", impl)(0) == 0


def test_a_million_numbers_hold_78498_primes():
    assert ckernels.count_primes(0, 10**6) == 78498
    assert ckernels.count_primes_reference(0, 10**6) == 78498


def test_count_primes_handles_numbers_near_long_max(impl):
    # 2**61 - 1 is a Mersenne prime; trial division up to its root would take minutes, so
    # check the largest primes below 2**31 instead, and that LONG_MAX itself is accepted.
    count_primes = kernels.get("count_primes", impl)
    assert count_primes(2**31 - 1, 2**31) == 1
    assert count_primes(LONG_MAX, LONG_MAX) == 0


def test_numpy_integers_are_accepted(impl):
    assert kernels.get("count_primes", impl)(np.int64(0), np.int32(100)) == 25


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(0, 5000), span=st.integers(0, 2000))
def test_count_primes_twins_agree(lo, span):
    assert pykernels.count_primes(lo, lo + span) == ckernels.count_primes(lo, lo + span)
    assert ckernels.count_primes_reference(lo, lo + span) == ckernels.count_primes(lo, lo + span)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 50_000))
def test_countdown_twins_agree(n):
    assert pykernels.countdown(n) == ckernels.countdown(n) == n


@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 24), height=st.integers(1, 24), max_iter=st.integers(1, 80),
       data=st.data())
def test_mandelbrot_twins_agree(width, height, max_iter, data):
    row_start = data.draw(st.integers(0, height))
    row_stop = data.draw(st.integers(row_start, height))
    expected = pykernels.mandelbrot(width, height, max_iter, row_start, row_stop)
    got = ckernels.mandelbrot(width, height, max_iter, row_start, row_stop)
    assert got.dtype == expected.dtype == np.uint32
    assert got.shape == expected.shape == (row_stop - row_start, width)
    np.testing.assert_array_equal(got, expected)


def test_mandelbrot_interior_points_reach_max_iter(impl):
    image = kernels.get("mandelbrot", impl)(30, 30, 100)
    assert image[15, 10] == 100  # c = 0 + 0i never escapes
    assert image[0, 0] == 1      # c = -2 - 1.5i escapes at once


@pytest.mark.parametrize("splits", [(0, 7, 13, 40), (0, 1, 2, 39, 40), (0, 40)])
def test_split_mandelbrot_rows_equal_the_whole_image(impl, splits):
    mandelbrot = kernels.get("mandelbrot", impl)
    whole = mandelbrot(33, 40, 60)
    parts = [mandelbrot(33, 40, 60, a, b) for a, b in zip(splits, splits[1:])]
    np.testing.assert_array_equal(np.vstack(parts), whole)


def test_empty_row_range_gives_an_empty_image(impl):
    image = kernels.get("mandelbrot", impl)(5, 4, 10, 2, 2)
    assert image.shape == (0, 5) and image.dtype == np.uint32


BAD_ARGUMENTS = [
    # (kernel, args, exception, message)
    ("countdown", (-1,), ValueError, r"countdown: n must be >= 0, got -1"),
    ("countdown", (1.5,), TypeError, r"countdown: n must be an int, got float \(1.5\)"),
    ("countdown", ("10",), TypeError, r"countdown: n must be an int, got str \('10'\)"),
    ("countdown", (True,), TypeError, r"countdown: n must be an int, got bool \(True\)"),
    ("countdown", (LONG_MAX + 1,), OverflowError,
     rf"countdown: n must fit in a C long \(<= {LONG_MAX}\), got {LONG_MAX + 1}"),
    ("count_primes", (10, 3), ValueError, r"count_primes: hi \(3\) must be >= lo \(10\)"),
    ("count_primes", (-5, 3), ValueError, r"count_primes: lo must be >= 0, got -5"),
    ("count_primes", (0, 2.0), TypeError, r"count_primes: hi must be an int, got float \(2.0\)"),
    ("count_primes", (None, 2), TypeError, r"count_primes: lo must be an int, got NoneType \(None\)"),
    ("count_primes", (0, 2**64), OverflowError,
     rf"count_primes: hi must fit in a C long \(<= {LONG_MAX}\), got {2**64}"),
    ("mandelbrot", (0, 10, 10), ValueError, r"mandelbrot: width must be >= 1, got 0"),
    ("mandelbrot", (10, -2, 10), ValueError, r"mandelbrot: height must be >= 1, got -2"),
    ("mandelbrot", (10, 10, 0), ValueError, r"mandelbrot: max_iter must be >= 1, got 0"),
    ("mandelbrot", (10, 10, 2**32), OverflowError,
     rf"mandelbrot: max_iter must fit in a uint32 count \(<= {2**32 - 1}\), got {2**32}"),
    ("mandelbrot", (10, 10, False), TypeError, r"mandelbrot: max_iter must be an int, got bool \(False\)"),
    ("mandelbrot", (10.0, 10, 5), TypeError, r"mandelbrot: width must be an int, got float \(10.0\)"),
    ("mandelbrot", (10, 10, 5, 11), ValueError, r"mandelbrot: row_start \(11\) must be <= height \(10\)"),
    ("mandelbrot", (10, 10, 5, -1), ValueError, r"mandelbrot: row_start must be >= 0, got -1"),
    ("mandelbrot", (10, 10, 5, 0, 12), ValueError, r"mandelbrot: row_stop \(12\) must be <= height \(10\)"),
    ("mandelbrot", (10, 10, 5, 6, 4), ValueError, r"mandelbrot: row_stop \(4\) must be >= row_start \(6\)"),
    ("mandelbrot", (LONG_MAX + 1, 10, 5), OverflowError,
     rf"mandelbrot: width must fit in a C long \(<= {LONG_MAX}\), got {LONG_MAX + 1}"),
]


@pytest.mark.parametrize("name, args, error, message", BAD_ARGUMENTS,
                         ids=[f"{b[0]}{b[1]!r}"[:60] for b in BAD_ARGUMENTS])
def test_bad_arguments_get_the_same_clear_error_in_both_implementations(impl, name, args, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        kernels.get(name, impl)(*args)


def test_reference_names_itself_in_errors():
    with pytest.raises(ValueError, match=r"^count_primes_reference: hi \(1\) must be >= lo \(2\)$"):
        ckernels.count_primes_reference(2, 1)


def test_build_info_reports_the_facts_of_the_build():
    info = kernels.build_info()
    assert set(info) >= {"cython_version", "compiler", "cflags", "openmp",
                         "openmp_max_threads", "freethreading_compatible",
                         "subinterpreters_compatible", "module"}
    major, minor = (int(x) for x in info["cython_version"].split(".")[:2])
    assert (major, minor) >= (3, 1)
    assert "-O3" in info["cflags"]
    assert info["freethreading_compatible"] is True
    assert info["subinterpreters_compatible"] == "own_gil"
    assert info["openmp"] == ("-fopenmp" in info["cflags"])
    assert info["openmp_max_threads"] >= 1


def test_kernel_consumer_runs_its_kernel_per_item_and_pickles(impl):
    import pickle

    consumer = pickle.loads(pickle.dumps(KernelConsumer("count_primes", impl)))
    assert consumer.send((3, (0, 100))) == (3, 25)
    assert consumer.close() is None


def test_kernel_consumer_rejects_unknown_kernels():
    with pytest.raises(UnknownKernelError):
        KernelConsumer("fib", "python")


@pytest.mark.parametrize("module", [pykernels, kernels, "gilstudy.kernels.work"])
def test_docstring_examples_run(module):
    if isinstance(module, str):
        import importlib

        module = importlib.import_module(module)
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0


# Where numpy cannot be imported (an isolated subinterpreter) the mandelbrot kernels return a
# PortableImage, which pickles into the numpy array every other model returns.

@pytest.mark.parametrize("protocol", [2, 5])
def test_a_portable_image_pickles_into_the_writable_numpy_array_of_its_pixels(protocol):
    import array
    import pickle

    pixels = array.array(_image.UINT32_CODE, range(12))
    image = pickle.loads(pickle.dumps(_image.PortableImage(pixels, 3, 4), protocol))
    assert isinstance(image, np.ndarray) and image.dtype == np.uint32
    assert image.flags.writeable
    assert image.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert _image.PortableImage(pixels, 3, 4).tolist() == image.tolist()


def test_a_portable_image_refuses_pixels_that_do_not_make_its_shape():
    import array

    with pytest.raises(ValueError, match=r"^PortableImage: 5 pixels do not make 2 rows of 3$"):
        _image.PortableImage(array.array(_image.UINT32_CODE, range(5)), 2, 3)


def test_an_image_too_large_to_allocate_raises_at_once(impl):
    # The size is computed with Python ints: no C product wraps around to a small buffer.
    with pytest.raises((MemoryError, OverflowError)):
        kernels.get("mandelbrot", impl)(LONG_MAX, 4, 1)


@pytest.mark.subinterpreters
@pytest.mark.timeout(120)
def test_every_kernel_runs_in_a_fresh_isolated_interpreter_with_the_same_results():
    import pickle

    from _in_subinterpreter import SMALL_ARGS, every_kernel_result, fresh_interpreter

    with fresh_interpreter() as interpreter:
        results, modules = pickle.loads(interpreter.call(every_kernel_result))
    assert "numpy" not in modules and "gilstudy.kernels._ckernels" in modules
    for name in kernels.NAMES:
        expected = kernels.get(name, "python")(*SMALL_ARGS[name])
        for variant in ("python", "cython", "prange"):
            got = results[name, variant]
            if name == "mandelbrot":
                assert isinstance(got, np.ndarray) and got.dtype == np.uint32
                np.testing.assert_array_equal(got, expected)
            else:
                assert got == expected
