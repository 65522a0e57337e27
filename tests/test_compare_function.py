# The user's own function in every model: `[f(*args) for args in inputs]`, named by
# MODULE:NAME or passed as an object, with a GIL-releasing twin for the "-nogil" rows. Every
# model must return the serial results in order; a function a process cannot import makes the
# process models unavailable with the fix, never a traceback.

import pytest

import _compare_functions as functions
from gilstudy import cli, compare
from gilstudy.compare import report, document
from gilstudy.compare.function import make_function_workload
from gilstudy.errors import ModelFailed, WrongAnswer

pytestmark = pytest.mark.one_pass

# Only reached in case of a deadlock (process models start slowly on a loaded machine).
TIMEOUT = 300

FAST = dict(workers=[1, 2], repeat=1, idle_timeout_s=0, min_time_s=0,
            max_outside_cores=float("inf"))
EXPECTED = [functions.sum_of_squares(*args) for args in functions.INPUTS]


@pytest.mark.timeout(TIMEOUT)
def test_every_model_runs_the_function_and_its_nogil_twin_and_rows_say_which():
    result = compare.run(function="_compare_functions:sum_of_squares",
                         inputs="_compare_functions:INPUTS",
                         nogil="_compare_functions:sum_of_squares_closed_form",
                         models="serial-*,threads-*,coprocess-*,pool-*,prange-cython", **FAST)
    assert result.expected == EXPECTED
    assert [(r.model, r.workers) for r in result.rows] == [
        ("serial-python", 1), ("serial-nogil", 1), ("threads-python", 1), ("threads-python", 2),
        ("threads-nogil", 1), ("threads-nogil", 2), ("coprocess-python", 1),
        ("coprocess-python", 2), ("coprocess-nogil", 1), ("coprocess-nogil", 2),
        ("pool-python", 1), ("pool-python", 2), ("pool-nogil", 1), ("pool-nogil", 2)]
    assert result.unavailable == {"prange-nogil": "needs one call that splits the whole work "
                                                  "over threads: only the built-in kernels' "
                                                  "prange twins have one"}
    assert result.model("threads-nogil").registered_as == "threads-cython"
    saved = document.to_dict(result)
    assert saved["workload"] == {
        "kind": "function", "name": "_compare_functions:sum_of_squares",
        "function": "_compare_functions:sum_of_squares",
        "nogil": "_compare_functions:sum_of_squares_closed_form",
        "inputs": "_compare_functions:INPUTS", "items": 16,
        "answer": {"results": 16, "sha256": saved["workload"]["answer"]["sha256"]}}
    assert "the nogil implementation _compare_functions:sum_of_squares_closed_form releases" \
           in report.verdict(result)


@pytest.mark.timeout(TIMEOUT)
def test_without_a_nogil_twin_its_rows_are_unavailable_with_the_reason():
    result = compare.run(function=functions.sum_of_squares, inputs=functions.make_inputs,
                         models="serial-*,threads-*", **FAST)
    assert result.expected == [functions.sum_of_squares(n) for n in range(10)]
    reason = "no GIL-releasing implementation was given (nogil)"
    assert result.unavailable == {"serial-nogil": reason, "threads-nogil": reason}
    assert {r.model for r in result.rows} == {"serial-python", "threads-python"}


def defined_in_main(n):
    return n + 1


defined_in_main.__module__ = "__main__"


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("function, reason", [
    (defined_in_main, "function __main__:defined_in_main is defined in __main__, which a new "
                      "process does not import; move it to a module of its own (for instance "
                      "myfunctions.py) and name it as myfunctions:defined_in_main"),
    (lambda n: n + 1, "function test_compare_function:<lambda> cannot be sent to another "
                      "process (PicklingError: "),
], ids=["main", "lambda"])
def test_a_function_a_new_process_cannot_import_leaves_the_process_models_unavailable(
        function, reason):
    result = compare.run(function=function, inputs=[(1,), (2,)],
                         models="threads-python,coprocess-python,pool-python,joblib-python",
                         **FAST)
    assert result.expected == [2, 3]
    assert set(result.unavailable) == {"coprocess-python", "pool-python", "joblib-python"}
    assert all(text.startswith(reason) for text in result.unavailable.values())
    assert {r.model for r in result.rows} == {"serial-python", "threads-python"}


@pytest.mark.timeout(TIMEOUT)
def test_a_function_that_raises_fails_the_run_with_its_own_error_as_the_cause():
    with pytest.raises(ModelFailed) as caught:
        compare.run(function=functions.fails_on_seven, inputs=functions.make_inputs,
                    models="threads-python", **FAST)
    assert str(caught.value) == ("serial-python with 1 worker: the reference run failed: "
                                 "ValueError: seven is not allowed (got 7)")
    assert repr(caught.value.__cause__) == "ValueError('seven is not allowed (got 7)')"


@pytest.mark.timeout(TIMEOUT)
def test_a_model_that_returns_other_results_is_a_wrong_answer_naming_the_result():
    with pytest.raises(WrongAnswer) as caught:
        compare.run(function="_compare_functions:differs_in_other_processes",
                    inputs="_compare_functions:INPUTS", models="threads-python,coprocess-python",
                    **FAST)
    assert caught.value.subject == "coprocess-python"
    assert str(caught.value) == (
        "coprocess-python with 1 worker computed a wrong answer for "
        "_compare_functions:differs_in_other_processes(*args) over 16 inputs (repeat 1): "
        "result 0 (inputs[0] = (200,)) is -200, serial-python's is 200")


@pytest.mark.parametrize("arguments, error, message", [
    (dict(function=functions.sum_of_squares, inputs=functions.NOT_TUPLES), TypeError,
     r"^inputs: item 0 must be a tuple of arguments, such as \(x,\) for one argument, got int "
     r"\(1\)$"),
    (dict(function=functions.sum_of_squares, inputs=[(1,), [2]]), TypeError,
     r"^inputs: item 1 must be a tuple of arguments, such as \(x,\) for one argument, got list "
     r"\(\[2\]\)$"),
    (dict(function=functions.sum_of_squares, inputs=[]), ValueError,
     r"^inputs: give at least one tuple of arguments, got none$"),
    (dict(function=functions.sum_of_squares, inputs=5), TypeError,
     r"^inputs: must be an iterable of argument tuples, or a callable returning one, got int "),
    (dict(function="no_such_module_here:f", inputs=[(1,)]), ValueError,
     r"^function: cannot import module 'no_such_module_here': ModuleNotFoundError: No module "
     r"named 'no_such_module_here'$"),
    (dict(function=42, inputs=[(1,)]), TypeError,
     r"^function: must be a callable or 'MODULE:NAME', got int \(42\)$"),
    (dict(function=functions.sum_of_squares, inputs=[(1,)], kernel="countdown"), ValueError,
     r"^compare\.run: kernel cannot go with function= \(its inputs are the items\)$"),
    (dict(function=functions.sum_of_squares), ValueError,
     r"^compare\.run: function= needs inputs=, an iterable of argument tuples$"),
    (dict(inputs=[(1,)]), ValueError,
     r"^compare\.run: inputs and nogil go with function=, which is missing$"),
    (dict(function=functions.sum_of_squares, inputs=[(1,)], pythons=["/no/such/python"]),
     ValueError, r"^pythons: /no/such/python: "),
    (dict(workload=make_function_workload(functions.sum_of_squares, [(1,)]), size=3),
     ValueError, r"^compare\.run: workload= cannot go with kernel, size, items, function, "
                 r"inputs or nogil$"),
    (dict(workload="count_primes"), TypeError, r"^compare\.run: workload must be a Work, got str$"),
], ids=["not-tuples", "a-list", "empty", "not-iterable", "no-module", "not-callable",
        "with-kernel", "no-inputs", "inputs-alone", "bad-python", "workload-and-size",
        "workload-str"])
def test_bad_function_arguments_are_refused_before_anything_runs(arguments, error, message):
    with pytest.raises(error, match=message):
        compare.run(**{**FAST, **arguments})


def test_another_interpreter_needs_the_function_by_name():
    workload = make_function_workload(functions.sum_of_squares, [(1,)])
    with pytest.raises(ValueError, match=r"^pythons: another interpreter finds the function by "
                                         r"its name, so give it as 'MODULE:NAME', not as an "
                                         r"object$"):
        workload.spec()
    named = make_function_workload("_compare_functions:sum_of_squares",
                                   "_compare_functions:INPUTS")
    spec = named.spec()
    assert spec["function"] == "_compare_functions:sum_of_squares"
    assert spec["inputs"] == "_compare_functions:INPUTS" and spec["nogil"] is None
    assert any(path.endswith("tests") for path in spec["path"])


@pytest.mark.timeout(TIMEOUT)
def test_the_command_line_runs_a_function_and_names_its_rows(capsys):
    status = cli.main(["compare", "--function", "_compare_functions:sum_of_squares",
                       "--inputs", "_compare_functions:make_inputs",
                       "--nogil", "_compare_functions:sum_of_squares_closed_form",
                       "--models", "serial-*,threads-*,pool-*", "--workers", "1,2",
                       "--repeat", "1", "--min-time", "0", "--idle-timeout", "0", "--quiet"])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert out.startswith("Answer for _compare_functions:sum_of_squares(*args) over 10 "
                          "inputs, nogil: _compare_functions:sum_of_squares_closed_form on this "
                          "machine")
    assert ("\n\ngilstudy compare: _compare_functions:sum_of_squares(*args) over 10 inputs, "
            "nogil: _compare_functions:sum_of_squares_closed_form, ") in out
    for model in ("serial-nogil", "threads-nogil", "pool-python", "pool-nogil"):
        assert f"\n{model} " in out
