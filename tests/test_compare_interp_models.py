# The compare models on subinterpreters: gilstudy.interpreters' runner (interp-python,
# interp-cython) and the standard library's InterpreterPoolExecutor (interppool-python). Before
# Python 3.14 they are unavailable with the version they need; from 3.14 on (make test's 3.15
# pass) each gives serial-python's answer, fails by name, and leaves no thread behind.

import json
import platform
import sys
import threading
import time

import numpy as np
import pytest

from gilstudy import compare, kernels
from gilstudy.compare import document, registry, report
from gilstudy.compare.workload import Workload
from gilstudy.errors import RemoteError

from _leftovers import threads_left

# Only reached in case of a deadlock.
TIMEOUT = 120

INTERP_MODELS = ["interp-python", "interp-cython", "interppool-python"]

TINY = dict(repeat=1, idle_timeout_s=0, min_time_s=0, max_outside_cores=float("inf"))

needs_interpreters = pytest.mark.subinterpreters


def test_the_interpreter_models_are_registered_after_the_process_pools():
    names = registry.names()
    assert names[names.index("joblib-cython") + 1:][:3] == INTERP_MODELS
    assert [registry.get(name).impl for name in INTERP_MODELS] == ["python", "cython", "python"]


def test_before_python_3_14_they_are_unavailable_naming_the_version_needed():
    reasons = {name: registry.get(name).unavailable_reason() for name in INTERP_MODELS}
    if sys.version_info >= (3, 14):
        assert reasons == dict.fromkeys(INTERP_MODELS)
    else:
        assert reasons == dict.fromkeys(INTERP_MODELS, (
            "subinterpreters need Python 3.14 or newer (concurrent.interpreters); this is "
            f"Python {platform.python_version()}"))


@needs_interpreters
@pytest.mark.timeout(TIMEOUT)
def test_each_interpreter_model_gives_serials_answer_in_the_table_json_and_plot(tmp_path):
    threads_before = set(threading.enumerate())
    result = compare.run(kernel="count_primes", size=3000, items=8, models=INTERP_MODELS,
                         workers=[1, 2], **TINY)
    assert [(r.model, r.workers) for r in result.rows] == [
        ("serial-python", 1), *((name, n) for name in INTERP_MODELS for n in (1, 2))]
    assert result.expected == 430  # every row's answer was checked against it
    assert all(r.dispatch_s > 0 for r in result.rows if r.model != "serial-python")
    for name in INTERP_MODELS:
        assert f"\n{name} " in report.table(result)
    assert {m["name"] for m in json.loads(document.to_json(result))["models"] if m["available"]} == {
        "serial-python", *INTERP_MODELS}
    png = tmp_path / "interp.png"
    compare.plot(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert threads_left(threads_before) == set()


@needs_interpreters
@pytest.mark.timeout(TIMEOUT)
def test_mandelbrot_computed_without_numpy_in_an_interpreter_is_the_same_array():
    result = compare.run(kernel="mandelbrot", size=16, items=4,
                         models=["interp-python", "interppool-python"], workers=[2], **TINY)
    assert [r.model for r in result.rows] == ["serial-python", "interp-python",
                                              "interppool-python"]
    whole = kernels.get("mandelbrot", "cython")(16, 16, 200)
    assert np.array_equal(result.expected, whole)


@needs_interpreters
@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("model", ["interp-python", "interppool-python"])
def test_a_consumer_that_raises_in_an_interpreter_raises_its_error_from_run(model):
    threads_before = set(threading.enumerate())
    bad = Workload("count_primes", 3000, 1, ((0, (10, 3)),))  # an item the kernel refuses
    workers = registry.get(model).launch(bad, 1)
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match=r"count_primes: hi \(3\) must be >= lo \(10\)"):
            workers.run(bad, 60)
        assert time.monotonic() - started < 30  # at once, not after the patience
    finally:
        try:
            workers.close()
        except RemoteError:
            pass  # interp-python's close() raises the worker's error again, as documented
    assert threads_left(threads_before) == set()


def test_a_users_function_is_unavailable_in_interpreters_naming_why():
    result = compare.run(function="_compare_functions:sum_of_squares",
                         inputs="_compare_functions:INPUTS",
                         nogil="_compare_functions:sum_of_squares_closed_form",
                         models=INTERP_MODELS, workers=[1], **TINY)
    names = ["interp-python", "interp-nogil", "interppool-python"]
    reason = ("its consumer, gilstudy.compare.function.FunctionConsumer, is part of "
              "gilstudy.compare, which imports numpy, and numpy cannot be imported in a "
              "subinterpreter")
    if sys.version_info >= (3, 14):
        assert result.unavailable == dict.fromkeys(names, reason)
    else:
        assert set(result.unavailable) == set(names)
    assert [r.model for r in result.rows] == ["serial-python"]
