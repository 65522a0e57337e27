# The race and convoy experiments: the fixes for the race lose nothing, results carry the
# labels and JSON shape reports rely on, bad options fail in one line. No timing thresholds:
# how often the race bites and how long the I/O thread waits depend on the machine.
#
# Tests marked ftpython run under the free-threaded interpreter named by the environment
# variable GILSTUDY_FTPYTHON (the venv python that `make ftpython` prints, which .ci/run
# sets); without it they are reported as skipped with that reason, and a path that is set
# but broken makes them fail.

import json
import math
import os
import re
import subprocess
import sys

import pytest

from gilstudy import cli, machine
from gilstudy.errors import InterpreterFailed
from gilstudy.experiments import convoy, race
from test_pythons import python_without_gilstudy  # noqa: F401 (a fixture)

# Only reached if a subprocess hangs.
TIMEOUT = 120

SMALL_N = 20_000
SHORT_S = 0.05

FTPYTHON = os.environ.get("GILSTUDY_FTPYTHON", "")



def ftpython(test):
    """Mark ``test`` as needing the free-threaded interpreter; skipped, with the reason
    shown by ``-ra``, when GILSTUDY_FTPYTHON is unset."""
    test = pytest.mark.skipif(not FTPYTHON, reason="GILSTUDY_FTPYTHON is not set: run `make "
                              "ftpython` and set it to the python it prints")(test)
    return pytest.mark.ftpython(test)


@pytest.fixture(scope="module")
def ft_python() -> str:
    if not (os.path.isfile(FTPYTHON) and os.access(FTPYTHON, os.X_OK)):
        pytest.fail(f"GILSTUDY_FTPYTHON={FTPYTHON!r} is not an executable file")
    return FTPYTHON


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_fixes_lose_nothing(result: race.RaceResult, repeat: int) -> None:
    for variant in ("locked", "tally"):
        runs = result.runs_of(variant)
        assert len(runs) == repeat
        assert [r.final for r in runs] == [0] * repeat
        assert [r.lost for r in runs] == [0] * repeat


# ---- race --------------------------------------------------------------------------------

def test_lock_and_per_thread_tally_lose_no_update():
    assert_fixes_lose_nothing(race.run(n=SMALL_N, repeat=2), repeat=2)


def test_race_runs_every_variant_once_per_round():
    result = race.run(n=1_000, repeat=3)
    assert [r.variant for r in result.runs] == list(race.VARIANTS) * 3


def test_lost_updates_are_the_distance_from_the_expected_value():
    result = race.run(n=SMALL_N)
    for r in result.runs:
        assert r.lost == abs(r.final - r.expected)
    assert result.runs_of("unlocked_add_add")[0].expected == 2 * SMALL_N
    assert result.runs_of("unlocked_add_add")[0].lost_exact is True
    assert result.runs_of("unlocked")[0].lost_exact is False


def test_race_result_is_labelled_with_this_interpreter():
    result = race.run(n=1_000)
    assert result.interpreter == machine.interpreter_label()
    assert result.gil_enabled == machine.gil_enabled()
    assert result.executable == sys.executable
    assert result.environment["interpreter"] == machine.interpreter_label()


def test_race_result_round_trips_through_json():
    result = race.run(n=1_000)
    assert race.RaceResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_race_report_says_whether_the_race_bit():
    result = race.run(n=1_000)
    report = race.format_report([result])
    assert result.verdict() in report.replace("\n  ", " ")
    expected = "the race bit in" if result.race_bit() else "the race did not bite in this run"
    assert expected in result.verdict()


def test_race_runs_in_another_interpreter_through_python():
    result = race.run(n=1_000, python=sys.executable)
    assert result.executable == sys.executable
    assert_fixes_lose_nothing(result, repeat=1)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n": 0}, ValueError, r"^race\.run: n must be >= 1, got 0$"),
    ({"n": 2.5}, TypeError, r"^race\.run: n must be an int, got float \(2\.5\)$"),
    ({"n": True}, TypeError, r"^race\.run: n must be an int, got bool \(True\)$"),
    ({"repeat": 0}, ValueError, r"^race\.run: repeat must be >= 1, got 0$"),
], ids=["n-zero", "n-float", "n-bool", "repeat-zero"])
def test_race_run_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        race.run(**kwargs)


def test_race_cli_writes_json_to_stdout(capsys):
    status, out, _ = run_cli(capsys, "experiment", "race", "--n", "1000", "--quiet", "--json", "-")
    assert status == 0
    document = json.loads(out)
    assert document["experiment"] == "race"
    (result,) = document["results"]
    assert result["interpreter"] == machine.interpreter_label()
    assert result["gil_enabled"] == machine.gil_enabled()
    assert {r["variant"] for r in result["runs"]} == set(race.VARIANTS)
    assert result["environment"]["python"] == machine.describe()["python"]


def test_race_cli_prints_a_table_and_writes_json_to_a_file(capsys, tmp_path):
    path = tmp_path / "race.json"
    status, out, _ = run_cli(capsys, "experiment", "race", "--n", "1000", "--quiet",
                             "--json", str(path))
    assert status == 0
    assert out.startswith("gilstudy experiment race: two threads, 1,000 updates each")
    for variant in race.VARIANTS.values():
        assert variant.description in out
    assert json.loads(path.read_text())["experiment"] == "race"


@pytest.mark.parametrize("module, args", [
    ("gilstudy.experiments.race", ["--n", "100"]),
    ("gilstudy.experiments.convoy", ["--seconds", "0.02"]),
], ids=["race", "convoy"])
def test_module_entry_point_prints_json_and_no_warning(module, args):
    # --python runs each experiment as ``python -m <module>``; that only works cleanly while
    # nothing imports the module before runpy does (gilstudy/__init__.py must not).
    done = subprocess.run([sys.executable, "-W", "error", "-m", module, "--json", "-", "--quiet",
                           *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["experiment"] == module.rsplit(".", 1)[1]


# ---- convoy ------------------------------------------------------------------------------

def assert_convoy_structure(result: convoy.ConvoyResult) -> None:
    assert [one.load for one in result.loads] == list(convoy.LOADS)
    for one in result.loads:
        assert one.description == convoy.LOADS[one.load].description
        assert one.responses >= 1
        assert 0 < one.p50_ms <= one.p99_ms <= one.max_ms
        assert one.kernel_calls >= 0
    assert result.load("none").kernel_calls == 0
    assert result.interval_ms == convoy.INTERVAL_S * 1e3


def test_convoy_measures_every_load_with_positive_latencies():
    result = convoy.run(seconds=SHORT_S)
    assert_convoy_structure(result)
    assert result.interpreter == machine.interpreter_label()
    assert result.gil_enabled == machine.gil_enabled()


def test_convoy_result_round_trips_through_json():
    result = convoy.run(seconds=SHORT_S)
    assert convoy.ConvoyResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_convoy_result_names_a_missing_load():
    result = convoy.run(seconds=SHORT_S)
    with pytest.raises(KeyError, match="no load 'gpu'"):
        result.load("gpu")


@pytest.mark.parametrize("seconds, error, message", [
    (0, ValueError, r"^convoy\.run: seconds must be > 0 and finite, got 0$"),
    (-1.5, ValueError, r"^convoy\.run: seconds must be > 0 and finite, got -1\.5$"),
    (math.inf, ValueError, r"^convoy\.run: seconds must be > 0 and finite, got inf$"),
    ("1", TypeError, r"^convoy\.run: seconds must be a number, got str \('1'\)$"),
], ids=["zero", "negative", "infinite", "string"])
def test_convoy_run_rejects_bad_seconds(seconds, error, message):
    with pytest.raises(error, match=message):
        convoy.run(seconds=seconds)


def test_convoy_cli_writes_json_with_the_environment(capsys):
    status, out, _ = run_cli(capsys, "experiment", "convoy", "--seconds", str(SHORT_S),
                             "--quiet", "--json", "-")
    assert status == 0
    document = json.loads(out)
    assert document["experiment"] == "convoy"
    (result,) = document["results"]
    assert set(result["environment"]) == set(machine.describe())
    assert [one["load"] for one in result["loads"]] == list(convoy.LOADS)
    for one in result["loads"]:
        assert {"responses", "p50_ms", "p99_ms", "max_ms", "kernel_calls"} <= set(one)


def test_convoy_cli_prints_one_row_per_load(capsys):
    status, out, _ = run_cli(capsys, "experiment", "convoy", "--seconds", str(SHORT_S), "--quiet")
    assert status == 0
    rows = [line for line in out.splitlines() if line.startswith(machine.interpreter_label() + ",")]
    assert len(rows) == len(convoy.LOADS)


# ---- option errors: exit 2, one line, no traceback ---------------------------------------

@pytest.fixture
def not_python(tmp_path):
    """An executable that is not a Python interpreter at all."""
    path = tmp_path / "not-python"
    path.write_text("#!/bin/sh\necho 'this is not python' >&2\nexit 3\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("argv, message", [
    (["race", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["race", "--n", "many"], "argument --n: must be an integer, got 'many'"),
    (["race", "--repeat", "-1"], "argument --repeat: must be >= 1, got -1"),
    (["convoy", "--seconds", "0"], "argument --seconds: must be > 0, got 0"),
    (["race", "--python", "/nonexistent/python3.13t"],
     "--python /nonexistent/python3.13t: no such file"),
    (["convoy", "--python", ""],
     "argument --python: must be comma-separated interpreter paths, got ''"),
], ids=["n-zero", "n-word", "repeat-negative", "seconds-zero", "python-missing", "python-empty"])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    status, _, err = run_cli(capsys, "experiment", *argv)
    assert status == 2
    assert err.splitlines()[-1] == f"gilstudy experiment {argv[0]}: error: {message}"
    assert "Traceback" not in err


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_json_path_in_a_missing_directory_exits_2_before_running(capsys, tmp_path, experiment):
    path = tmp_path / "missing" / "out.json"
    status, out, err = run_cli(capsys, "experiment", experiment, "--json", str(path))
    assert (status, out) == (2, "")
    assert err == (f"gilstudy experiment {experiment}: error: --json {path}: directory "
                   f"{path.parent} does not exist\n")


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_a_program_that_is_not_python_exits_2_with_one_line(capsys, not_python, experiment):
    status, out, err = run_cli(capsys, "experiment", experiment, "--python", not_python)
    assert (status, out) == (2, "")
    assert err == (f"gilstudy experiment {experiment}: error: --python {not_python}: is not a "
                   "Python interpreter (asked to run a Python script, it printed 'this is not "
                   "python' and exited with status 3)\n")


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_a_python_without_gilstudy_exits_2_with_one_line(capsys, python_without_gilstudy,
                                                        experiment):
    status, out, err = run_cli(capsys, "experiment", experiment, "--python",
                               python_without_gilstudy)
    assert (status, out) == (2, "")
    assert err == (f"gilstudy experiment {experiment}: error: --python {python_without_gilstudy}: "
                   "gilstudy is not installed there (install it there with pip, or run make "
                   "ftpython for the free-threaded build)\n")


def test_run_with_a_program_that_is_not_python_raises_value_error(not_python):
    with pytest.raises(ValueError, match=f"^{re.escape(not_python)}: is not a Python interpreter "):
        race.run(n=10, python=not_python)


# ---- a child interpreter that fails: InterpreterFailed, exit status 1 ---------------------

def _wrapper(tmp_path, module_command: str) -> str:
    """An executable that is this Python for the probe (``-c``), but runs
    ``module_command`` when asked to run the experiment's module (``-m``)."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n"
                    f'if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
                    f"{module_command}\n")
    path.chmod(0o755)
    return str(path)


def test_a_child_interpreter_that_dies_raises_interpreter_failed(tmp_path):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    with pytest.raises(InterpreterFailed) as caught:
        race.run(n=10, python=python)
    assert str(caught.value) == (f"{python} -m gilstudy.experiments.race: the child process "
                                 "failed (status 3: Fatal Python error: simulated)")
    assert caught.value.subject == python


def test_a_child_interpreter_that_prints_no_json_raises_interpreter_failed(tmp_path):
    python = _wrapper(tmp_path, "echo 'T-minus 3'")
    with pytest.raises(InterpreterFailed, match=(
            f"^{re.escape(python)} -m gilstudy.experiments.convoy: printed no JSON document ")):
        convoy.run(seconds=SHORT_S, python=python)


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_a_child_interpreter_that_dies_is_exit_status_1_with_one_line(capsys, tmp_path,
                                                                      experiment):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    status, out, err = run_cli(capsys, "experiment", experiment, "--python", python, "--quiet")
    assert (status, out) == (1, "")
    assert err == (f"gilstudy experiment {experiment}: error: {python} -m "
                   f"gilstudy.experiments.{experiment}: the child process failed (status 3: "
                   "Fatal Python error: simulated)\n")


# ---- under the free-threaded interpreter (GILSTUDY_FTPYTHON) -----------------------------

@ftpython
def test_free_threaded_lock_and_tally_lose_no_update(ft_python):
    result = race.run(n=SMALL_N, repeat=2, python=ft_python)
    assert result.interpreter.endswith("t")
    assert result.gil_enabled is False
    assert_fixes_lose_nothing(result, repeat=2)


@ftpython
def test_free_threaded_gil_stays_disabled_after_importing_the_cython_kernels(ft_python):
    code = ("import sys; before = sys._is_gil_enabled(); import gilstudy.kernels.cython as k; "
            "assert k.count_primes(0, 100) == 25; print(before, sys._is_gil_enabled())")
    done = subprocess.run([ft_python, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@ftpython
def test_free_threaded_convoy_is_labelled_gil_off(ft_python):
    result = convoy.run(seconds=SHORT_S, python=ft_python)
    assert_convoy_structure(result)
    assert result.interpreter.endswith("t")
    assert result.gil_enabled is False
    assert result.environment["free_threaded_build"] is True
