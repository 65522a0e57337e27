"""Numba beside Cython: the Numba kernels answer as the pure-Python ones do (the image bit
for bit) and raise the same errors; the numba-threads and numba-prange models give
serial-python's answers, compile while they start, and where numba cannot load (the
free-threaded and 3.15 passes of make test, which do not install it) are listed as
unavailable with the reason; a user's Numba function runs as ``--nogil``.

Tests marked ``numba`` need the Numba kernels and are deselected, and counted, where they
cannot load; the others run in every pass and check what that pass must show. Numba
compiles each function once per process (seconds in all): the ``nk`` fixture does it once
for the module.
"""

import importlib.util
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _in_subinterpreter import PROBE_STEPS, steps_while_kernel_runs
from gilstudy import cli, compare, kernel_table, kernels
from gilstudy.compare import registry
from gilstudy.compare.function import FunctionConsumer, make_function_workload
from gilstudy.kernels import _args
from gilstudy.kernels import cython as ckernels
from gilstudy.kernels import python as pykernels
from gilstudy.kernels.work import KernelConsumer
from test_kernels import BAD_ARGUMENTS

# Only reached in case of a deadlock (compilation is slow on a loaded machine).
TIMEOUT = 300

NUMBA_MODELS = ["numba-threads", "numba-prange"]
# Why the Numba kernels cannot load in this pass (None where they can).
REASON = kernels.impl_unavailable_reason("numba")
NOT_INSTALLED = ("the numba kernels need numba, which is not installed: "
                 "pip install 'gilstudy[numba]'")
FAST = dict(workers=[1, 2], repeat=1, idle_timeout_s=0, min_time_s=0,
            max_outside_cores=float("inf"))

needs_numba = pytest.mark.numba


@pytest.fixture(scope="module")
def nk():
    """gilstudy.kernels.numba with every kernel and prange twin compiled."""
    from gilstudy.kernels import numba as numba_kernels

    numba_kernels.compile_all()
    return numba_kernels


@pytest.fixture
def without_numba(monkeypatch):
    """This process as if numba were not installed: importing it fails."""
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "gilstudy.kernels.numba", raising=False)


# ---- in every pass ------------------------------------------------------------------

def test_numba_is_an_optional_implementation_beside_the_two_always_there():
    assert kernels.IMPLS == ("python", "cython")
    assert kernels.OPTIONAL_IMPLS == ("numba",)
    assert kernels.EXTRAS == {"numba": ("numba", "gilstudy[numba]")}


def test_the_numba_models_come_after_the_interpreter_models_and_run_the_numba_impl():
    names = registry.names()
    assert names[names.index("interppool-python") + 1:][:2] == NUMBA_MODELS
    assert [registry.get(name).impl for name in NUMBA_MODELS] == ["numba", "numba"]
    assert not set(NUMBA_MODELS) & {m.name for m in registry.select("*-cython,*-python")}


def test_the_numba_models_are_unavailable_exactly_where_the_numba_kernels_cannot_load():
    installed = importlib.util.find_spec("numba") is not None
    assert (REASON is None) == installed, REASON
    if not installed:
        assert REASON == NOT_INSTALLED
    assert {name: registry.get(name).unavailable_reason() for name in NUMBA_MODELS} == \
        dict.fromkeys(NUMBA_MODELS, REASON)


def test_without_numba_asking_for_the_numba_kernels_names_the_extra(without_numba):
    assert kernels.impl_unavailable_reason("numba") == NOT_INSTALLED
    for name in kernels.NAMES:
        with pytest.raises(ImportError, match=f"^{NOT_INSTALLED}$".replace("[", r"\[")
                           .replace("]", r"\]")) as caught:
            kernels.get(name, "numba")
        assert caught.value.name == "numba"
    with pytest.raises(ImportError):
        KernelConsumer("count_primes", "numba")


def test_without_numba_the_models_and_the_kernel_table_say_why(without_numba):
    assert {name: registry.get(name).unavailable_reason() for name in NUMBA_MODELS} == \
        dict.fromkeys(NUMBA_MODELS, NOT_INSTALLED)
    # Listing the counts it would run at (bench/bench_compare.py does) needs no numba.
    assert registry.get("numba-prange").worker_counts([1, 2, 64]) == [1, 2, 64]
    timings = kernel_table.time_kernels(repeat=1, scale=0.01)
    assert [(t.numba_s, t.numba_compile_s, t.numba_speedup) for t in timings] == \
        [(None, None, None)] * 3
    table = kernel_table.format_table(timings)
    assert table.splitlines()[2].split()[4] == "-"  # the numba s column of countdown


def test_an_unknown_implementation_lists_the_optional_one_too():
    with pytest.raises(LookupError, match=r"^unknown kernel implementation 'rust'; choose one "
                                          r"of: python, cython, numba$"):
        kernels.get("countdown", "rust")


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("kernel, size", [("count_primes", 3000), ("countdown", 50_000),
                                          ("mandelbrot", 24)])
def test_compare_runs_the_numba_models_with_serial_pythons_answer_or_says_why_not(kernel, size):
    result = compare.run(kernel, size=size, items=8, models="numba-*", **FAST)
    if REASON is not None:
        assert result.unavailable == dict.fromkeys(NUMBA_MODELS, REASON)
        assert [r.model for r in result.rows] == ["serial-python"]
        assert f"unavailable: numba-threads, numba-prange: {REASON}" in compare.report.table(result)
        return
    # Every pass's answer was checked against serial-python's (bit for bit for the image:
    # same dtype, same values), or run() would have raised WrongAnswer.
    assert result.unavailable == {}
    prange_counts = registry.get("numba-prange").worker_counts([1, 2])
    assert [(r.model, r.workers) for r in result.rows] == [
        ("serial-python", 1), ("numba-threads", 1), ("numba-threads", 2)] + [
        ("numba-prange", n) for n in prange_counts]
    assert all(r.impl == "numba" for r in result.rows[1:])
    assert "numba-threads: the Numba kernel releases the GIL" in compare.report.verdict(result)
    assert compare.document.to_dict(result)["environment"]["versions"]["numba"]


# ---- where the Numba kernels load ---------------------------------------------------

@needs_numba
def test_get_gives_the_numba_twins_with_the_pure_python_docstrings(nk):
    for name in kernels.NAMES:
        assert kernels.get(name, "numba") is getattr(nk, name)
        assert getattr(nk, name).__doc__ == getattr(pykernels, name).__doc__


@needs_numba
def test_known_values(nk):
    assert nk.count_primes(0, 100) == 25
    assert nk.count_primes(0, 10**5) == 9592
    assert nk.count_primes(7919, 7920) == 1
    assert nk.count_primes(10, 10) == 0
    assert nk.count_primes(2**31 - 1, 2**31) == 1
    assert nk.count_primes(_args.LONG_MAX, _args.LONG_MAX) == 0
    assert nk.countdown(12345) == 12345 and nk.countdown(0) == 0
    assert nk.count_primes(np.int64(0), np.int32(100)) == 25


@needs_numba
@settings(max_examples=40, deadline=None)
@given(lo=st.integers(0, 5000), span=st.integers(0, 2000), nthreads=st.integers(1, 2))
def test_count_primes_twins_agree(nk, lo, span, nthreads):
    expected = pykernels.count_primes(lo, lo + span)
    assert nk.count_primes(lo, lo + span) == expected
    assert nk.count_primes_prange(lo, lo + span, nthreads) == expected


@needs_numba
@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 300_000), nthreads=st.integers(1, 2))
def test_countdown_twins_agree(nk, n, nthreads):
    assert nk.countdown(n) == nk.countdown_prange(n, nthreads) == n


@needs_numba
@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 24), height=st.integers(1, 24), max_iter=st.integers(1, 80),
       nthreads=st.integers(1, 2), data=st.data())
def test_the_numba_image_equals_the_python_and_cython_ones_bit_for_bit(nk, width, height,
                                                                       max_iter, nthreads,
                                                                       data):
    row_start = data.draw(st.integers(0, height))
    row_stop = data.draw(st.integers(row_start, height))
    args = (width, height, max_iter, row_start, row_stop)
    expected = pykernels.mandelbrot(*args)
    assert np.array_equal(ckernels.mandelbrot(*args), expected)
    for got in (nk.mandelbrot(*args), nk.mandelbrot_prange(*args, nthreads=nthreads)):
        assert got.dtype == expected.dtype == np.uint32
        assert got.shape == expected.shape == (row_stop - row_start, width)
        assert got.tobytes() == expected.tobytes()


@needs_numba
def test_a_larger_image_equals_the_cython_one_bit_for_bit(nk):
    expected = ckernels.mandelbrot(400, 300, 200)
    assert nk.mandelbrot(400, 300, 200).tobytes() == expected.tobytes()
    assert nk.mandelbrot_prange(400, 300, 200, nthreads=2).tobytes() == expected.tobytes()


@needs_numba
@pytest.mark.parametrize("name, args, error, message", BAD_ARGUMENTS,
                         ids=[f"{b[0]}{b[1]!r}"[:60] for b in BAD_ARGUMENTS])
def test_bad_arguments_get_the_same_clear_error_as_python_and_cython(nk, name, args, error,
                                                                     message):
    with pytest.raises(error, match=f"^{message}$"):
        kernels.get(name, "numba")(*args)


@needs_numba
@pytest.mark.parametrize("name, args", [("countdown", (10,)), ("count_primes", (0, 10)),
                                        ("mandelbrot", (4, 4, 5))])
@pytest.mark.parametrize("nthreads", [0, -1, 2.0, "2", True, 10**6, 2**64])
def test_the_prange_twins_refuse_what_the_cython_ones_refuse_with_the_same_words(
        nk, name, args, nthreads):
    with pytest.raises(Exception) as cython_error:
        getattr(ckernels, f"{name}_prange")(*args, nthreads=nthreads)
    with pytest.raises(type(cython_error.value)) as numba_error:
        getattr(nk, f"{name}_prange")(*args, nthreads=nthreads)
    assert str(numba_error.value) == str(cython_error.value)


@needs_numba
def test_a_prange_twin_refuses_more_threads_than_numbas_pool_holds(nk):
    pool = nk.build_info()["num_threads"]
    with pytest.raises(ValueError, match=rf"^count_primes_prange: nthreads \({pool + 1}\) must "
                                         rf"be <= the {pool} threads of Numba's thread pool "
                                         r"\(set NUMBA_NUM_THREADS before numba is imported "
                                         r"for more\)$"):
        nk.count_primes_prange(0, 10, nthreads=pool + 1)


@needs_numba
def test_an_image_too_large_to_allocate_raises_at_once(nk):
    with pytest.raises((MemoryError, OverflowError)):
        nk.mandelbrot(_args.LONG_MAX, 4, 1)


@needs_numba
def test_the_numba_kernel_consumer_runs_its_kernel_and_pickles(nk):
    consumer = pickle.loads(pickle.dumps(KernelConsumer("count_primes", "numba")))
    assert consumer.send((3, (0, 100))) == (3, 25)


@needs_numba
def test_build_info_reports_numba_and_no_cache(nk):
    info = nk.build_info()
    assert info["numba_version"] and info["llvmlite_version"]
    assert info["num_threads"] >= 1 and info["cache"] is False
    assert info["threading_layer"] in ("tbb", "omp", "workqueue")  # a prange twin has run


@needs_numba
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("name, args", [("countdown", (300_000_000,)),
                                        ("count_primes", (0, 3_000_000)),
                                        ("mandelbrot", (1600, 1200, 500))])
def test_the_numba_kernels_let_other_threads_run(nk, long_switch_interval, name, args):
    # As tests/test_gil_release.py checks the Cython kernels: the main thread counts all its
    # steps while the kernel runs in another thread, which it could not under a held GIL.
    assert steps_while_kernel_runs(getattr(nk, name), args) == PROBE_STEPS


@needs_numba
def test_numba_prange_runs_at_the_counts_numbas_pool_holds(nk):
    pool = nk.build_info()["num_threads"]
    model = registry.get("numba-prange")
    assert model.worker_counts([1, pool, 4 * pool]) == sorted({1, pool})
    assert model.worker_counts([4 * pool]) == [pool]
    assert registry.get("numba-threads").worker_counts([1, 4 * pool]) == [1, 4 * pool]


@needs_numba
@pytest.mark.timeout(TIMEOUT)
def test_each_numba_model_compiles_its_kernel_while_it_starts_not_while_it_works():
    # In a fresh process, where nothing is compiled yet.
    code = (
        "from gilstudy.compare import registry, make_workload\n"
        "from gilstudy.kernels import numba as nk\n"
        "work = make_workload('count_primes', 1000, 4)\n"
        "print(nk.is_compiled('count_primes'), nk.is_compiled('count_primes', True))\n"
        "threads = registry.get('numba-threads').launch(work, 2)\n"
        "print(nk.is_compiled('count_primes'), nk.is_compiled('count_primes', True))\n"
        "prange = registry.get('numba-prange').launch(work, 1)\n"
        "print(nk.is_compiled('count_primes', True))\n"
        "print(threads.run(work, 60), prange.run(work, 60))\n"
        "threads.close(); prange.close()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["False False", "True False", "True", "168 168"]


@needs_numba
def test_the_numba_models_run_gilstudys_kernels_not_a_users_function(nk):
    import _compare_functions as functions

    work = make_function_workload(functions.sum_of_squares, functions.INPUTS,
                                  functions.sum_of_squares_closed_form)
    reason = ("runs gilstudy's own numba kernels, not a function; give a numba function as "
              "nogil to run it on the -nogil models")
    assert {name: registry.get(name).unavailable_reason(work) for name in NUMBA_MODELS} == \
        dict.fromkeys(NUMBA_MODELS, reason)
    assert [registry.get(name).label_for(work) for name in NUMBA_MODELS] == NUMBA_MODELS


# ---- a user's Numba function as --nogil ---------------------------------------------

@needs_numba
def test_a_function_consumer_compiles_a_numba_function_when_made_and_when_unpickled():
    from numba import njit

    @njit(nogil=True)
    def triple(n):
        return 3 * n

    consumer = FunctionConsumer(triple, (5,))
    assert [str(s) for s in triple.signatures] == ["(int64,)"]  # nothing was called
    copy = pickle.loads(pickle.dumps(consumer))
    assert copy.function.signatures and copy.send((0, (7,))) == (0, 21)
    plain = FunctionConsumer(len, ([1, 2],))  # not a Numba function: nothing to compile
    assert plain.send((1, ([1, 2, 3],))) == (1, 3)


@needs_numba
@pytest.mark.timeout(TIMEOUT)
def test_nogil_takes_a_users_numba_function_on_the_command_line(capsys, tmp_path):
    import _numba_functions as functions

    path = tmp_path / "compare.json"
    status = cli.main(["compare", "--function", "_numba_functions:sum_of_squares",
                       "--inputs", "_numba_functions:INPUTS",
                       "--nogil", "_numba_functions:sum_of_squares_nogil",
                       "--models", "serial-*,threads-*,coprocess-cython", "--workers", "1,2",
                       "--repeat", "1", "--min-time", "0", "--idle-timeout", "0", "--quiet",
                       "--json", str(path)])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert "\nthreads-nogil " in out
    document = json.loads(path.read_text())
    rows = [(r["model"], r["workers"]) for r in document["rows"]]
    assert rows == [("serial-python", 1), ("serial-nogil", 1), ("threads-python", 1),
                    ("threads-python", 2), ("threads-nogil", 1), ("threads-nogil", 2),
                    ("coprocess-nogil", 1), ("coprocess-nogil", 2)]
    assert document["workload"]["nogil"] == "_numba_functions:sum_of_squares_nogil"
    # Every row's answer was checked against the plain function's; the Numba function was
    # compiled for the inputs' type while the models started.
    assert [str(s) for s in functions.sum_of_squares_nogil.signatures] == ["(int64,)"]


@needs_numba
def test_the_kernel_table_shows_numbas_time_and_compile_time(nk):
    timings = kernel_table.time_kernels(repeat=1, scale=0.01)
    for t in timings:
        assert t.numba_s > 0 and t.numba_compile_s >= 0 and t.numba_speedup > 0
    lines = kernel_table.format_table(timings).splitlines()
    assert lines[0].split("  ")[:1] == ["kernel"]
    assert [column.strip() for column in lines[0].split("  ") if column.strip()] == [
        "kernel", "args", "python s", "cython s", "numba s", "C ref s", "cython/C time",
        "numba compile s", "numba/python speedup", "cython/python speedup"]


@pytest.mark.timeout(TIMEOUT)
def test_breakeven_lists_numba_threads_as_unavailable_having_no_serial_numba():
    from gilstudy.compare import breakeven

    result = breakeven.run("count_primes", models="numba-*", targets_s=[1e-4], workers=[2],
                           repeat=1, min_time_s=0, idle_timeout_s=0,
                           max_outside_cores=float("inf"))
    assert result.curves == []
    # numba-prange hands out no items, so breakeven does not consider it at all.
    assert result.unavailable == {"numba-threads": REASON or (
        "breakeven times a model against the serial model of its implementation, and there "
        "is no serial-numba")}
