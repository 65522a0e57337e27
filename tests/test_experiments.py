# The race and convoy experiments: the fixes for the race lose nothing, results carry the
# labels and JSON shape reports rely on, the workload runs under any CPython from 2.7 on with
# nothing installed (the history, under each interpreter this machine has), a bad option
# fails in one line before anything runs, and a bad interpreter is an error row while the
# others are still reported. No timing thresholds, and no assertion on whether the race
# bites: that depends on the interpreter, the machine and chance.

import ast
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from gilstudy import cli, kernels, machine, pythons
from gilstudy.errors import InterpreterFailed
from gilstudy.experiments import _experiment, _workloads, convoy, race
from conftest import FTPYTHON_VARIABLE
from test_pythons import executable, fake_python, python_without_gilstudy  # noqa: F401

# Only reached if a subprocess hangs.
TIMEOUT = 120

SMALL_N = 20_000
SHORT_S = 0.05

# The interpreters the history covers; each runs where this machine has it (conftest's
# history_python marker), this one always.
HISTORY = sorted({"2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.13t",
                  machine.interpreter_label()},
                 key=lambda label: (tuple(map(int, label.rstrip("t").split("."))), label))

pytestmark = [pytest.mark.timeout(TIMEOUT), pytest.mark.one_pass]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`gilstudy ARGV...` in this process: (exit status, stdout, stderr). An experiment is
    given --idle-timeout 0 first, so that it does not wait for a busy machine to go quiet."""
    if argv[:1] == ("experiment",) and argv[1] in ("race", "convoy"):
        argv = (*argv[:2], "--idle-timeout", "0", *argv[2:])
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def row_label(path: str) -> str:
    """How the reports label the rows of the interpreter at ``path``: '3.13.1t, GIL off'."""
    python = pythons.probe(path)
    build = "t" if python.free_threaded else ""
    return f"{python.version}{build}, GIL {'on' if python.gil_enabled else 'off'}"


def assert_race_facts(result: race.RaceResult, n: int, repeat: int) -> None:
    """What holds in every run of the race, wherever it ran: the fixes lose nothing, and the
    unlocked variants cannot go past what n updates per thread allow."""
    assert [r.variant for r in result.runs] == list(race.VARIANTS) * repeat
    for variant in ("locked", "tally"):
        assert [(r.final, r.lost) for r in result.runs_of(variant)] == [(0, 0)] * repeat
    for r in result.runs:
        assert r.lost == abs(r.final - r.expected)
        assert r.seconds > 0
    assert all(-n <= r.final <= n for r in result.runs_of("unlocked"))
    assert all(0 < r.final <= 2 * n for r in result.runs_of("unlocked_add_add"))


def assert_convoy_structure(result: convoy.ConvoyResult) -> None:
    assert [one.load for one in result.loads] == list(convoy.LOADS)
    for one in result.loads:
        assert one.description == convoy.LOADS[one.load].description
        if one.unavailable:
            assert (one.responses, one.p50_ms, one.kernel_calls) == (0, None, 0)
            continue
        assert one.responses >= 1
        assert 0 <= one.p50_ms <= one.p99_ms <= one.max_ms
        assert one.kernel_calls >= 0
    assert result.load("none").kernel_calls == 0
    assert result.load("none").unavailable is None
    assert result.load("python").unavailable is None
    assert result.interval_ms == convoy.INTERVAL_S * 1e3


def assert_labelled_as(result: _experiment.Result, python: pythons.Python) -> None:
    """The result says which interpreter ran it and in what state, as probe() saw it."""
    assert result.version == python.version
    assert result.interpreter == python.label
    assert result.free_threaded_build is python.free_threaded
    assert result.gil_enabled is (not python.free_threaded)
    assert result.environment["python"] == python.version
    assert set(result.environment) == set(machine.describe())
    if python.version_info >= (3, 2):
        assert (result.switch_interval_s, result.check_interval) == (0.005, None)
    else:
        assert (result.switch_interval_s, result.check_interval) == (None, 100)


# ---- the workload script -----------------------------------------------------------------

# Syntax that Python 2.7 rejects, as the ast module names it.
_PYTHON3_ONLY = (ast.JoinedStr, ast.AnnAssign, ast.Nonlocal, ast.NamedExpr, ast.AsyncFunctionDef,
                 ast.Await, ast.YieldFrom, ast.MatMult)


def test_the_workload_script_has_no_syntax_that_python_2_7_rejects():
    tree = ast.parse(pathlib.Path(_workloads.__file__).read_text())
    found = [type(node).__name__ for node in ast.walk(tree) if isinstance(node, _PYTHON3_ONLY)]
    for function in (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)):
        arguments = function.args
        if function.returns or arguments.kwonlyargs or arguments.posonlyargs or any(
                argument.annotation for argument in arguments.args):
            found.append(f"Python 3 signature of {function.name}()")
    assert found == []


def test_the_workload_script_imports_only_the_standard_library_at_its_top():
    tree = ast.parse(pathlib.Path(_workloads.__file__).read_text())
    imported = {alias.name for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names}
    assert imported <= set(sys.stdlib_module_names)
    assert not [node for node in tree.body if isinstance(node, ast.ImportFrom)]


def test_the_scripts_count_primes_is_the_python_kernels():
    for lo, hi in ((0, 2), (0, 100), (999, 20_000)):
        assert _workloads.count_primes(lo, hi) == kernels.get("count_primes", "python")(lo, hi)


def test_the_script_and_the_race_name_the_same_variants():
    assert set(_workloads.RACE_VARIANTS) == set(race.VARIANTS)
    assert {load.call[0] for load in convoy.LOADS.values() if load.call} == set(_workloads.LOADS)


def test_the_workload_script_refuses_unknown_arguments():
    done = subprocess.run([sys.executable, "-c", pathlib.Path(_workloads.__file__).read_text(),
                           "sleep", "{}"], capture_output=True, text=True, timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "usage: PYTHON -c SCRIPT race|convoy OPTIONS_JSON\n"


# ---- race --------------------------------------------------------------------------------

def test_lock_and_per_thread_tally_lose_no_update():
    assert_race_facts(race.run(n=SMALL_N, repeat=2), n=SMALL_N, repeat=2)


def test_lost_updates_are_the_distance_from_the_expected_value():
    result = race.run(n=SMALL_N)
    assert result.runs_of("unlocked_add_add")[0].expected == 2 * SMALL_N
    assert result.runs_of("unlocked_add_add")[0].lost_exact is True
    assert result.runs_of("unlocked")[0].lost_exact is False
    assert_race_facts(result, n=SMALL_N, repeat=1)


def test_race_result_is_labelled_with_the_interpreter_that_ran_it():
    result = race.run(n=1_000)
    assert_labelled_as(result, pythons.probe(sys.executable))
    assert result.executable == sys.executable
    assert result.gil_enabled == machine.gil_enabled()


def test_race_result_round_trips_through_json():
    result = race.run(n=1_000)
    assert race.RaceResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_race_report_says_whether_the_race_bit_and_why():
    result = race.run(n=1_000)
    report = race.format_report([result], [])
    assert result.verdict() in report.replace("\n  ", " ")
    expected = "the race bit in" if result.race_bit() else "the race did not bite in this run"
    assert expected in result.verdict()
    why = ("Without the GIL" if not result.gil_enabled else "3.10 and later"
           if sys.version_info >= (3, 10) else "before 3.10")
    assert why in result.verdict()


def test_race_runs_in_a_python_without_gilstudy(python_without_gilstudy):
    result = race.run(n=1_000, python=python_without_gilstudy)
    assert result.executable == python_without_gilstudy
    assert_race_facts(result, n=1_000, repeat=1)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n": 0}, ValueError, r"^race\.run: n must be >= 1, got 0$"),
    ({"n": 2.5}, TypeError, r"^race\.run: n must be an int, got float \(2\.5\)$"),
    ({"n": True}, TypeError, r"^race\.run: n must be an int, got bool \(True\)$"),
    ({"n": 10**30}, ValueError, r"^race\.run: n must be <= 100,000,000, got 1,0{3}(,0{3}){9}$"),
    ({"repeat": 0}, ValueError, r"^race\.run: repeat must be >= 1, got 0$"),
], ids=["n-zero", "n-float", "n-bool", "n-huge", "repeat-zero"])
def test_race_run_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        race.run(**kwargs)


def test_race_cli_writes_json_to_stdout(capsys):
    status, out, _ = run_cli(capsys, "experiment", "race", "--n", "1000", "--quiet", "--json", "-")
    assert status == 0
    document = json.loads(out)
    assert (document["experiment"], document["errors"]) == ("race", [])
    assert set(document["idle_check"]) == {"idle", "busy_cores", "waited_s", "measured"}
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


# ---- convoy ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def convoy_here() -> convoy.ConvoyResult:
    """One short convoy under this interpreter, for the tests that only read a result."""
    return convoy.run(seconds=SHORT_S)


def test_convoy_measures_every_load_with_ordered_latencies(convoy_here):
    result = convoy_here
    assert_convoy_structure(result)
    assert_labelled_as(result, pythons.probe(sys.executable))
    assert result.load("cython").unavailable is None  # gilstudy is installed here


def test_convoy_result_round_trips_through_json(convoy_here):
    result = convoy_here
    assert convoy.ConvoyResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_convoy_result_names_a_missing_load(convoy_here):
    with pytest.raises(KeyError, match="no load 'gpu'"):
        convoy_here.load("gpu")


def test_convoy_runs_the_cython_load_only_where_gilstudy_imports(python_without_gilstudy):
    result = convoy.run(seconds=SHORT_S, python=python_without_gilstudy)
    assert_convoy_structure(result)
    assert result.load("cython").unavailable == "ModuleNotFoundError: No module named 'gilstudy'"
    report = convoy.format_report([result], [])
    assert re.search(r"Cython count_primes \(nogil\) +not run +- +- +- +-$", report, re.M)
    assert (f"Cython count_primes (nogil) not run under {result.version}: gilstudy's Cython "
            "kernels do not import there (ModuleNotFoundError: No module named 'gilstudy')."
            ) in report.replace("\n  ", " ")


@pytest.mark.parametrize("seconds, error, message", [
    (0, ValueError, r"^convoy\.run: seconds must be > 0 and <= 3600, got 0$"),
    (-1.5, ValueError, r"^convoy\.run: seconds must be > 0 and <= 3600, got -1\.5$"),
    (math.inf, ValueError, r"^convoy\.run: seconds must be > 0 and <= 3600, got inf$"),
    (math.nan, ValueError, r"^convoy\.run: seconds must be > 0 and <= 3600, got nan$"),
    (1e30, ValueError, r"^convoy\.run: seconds must be > 0 and <= 3600, got 1e\+30$"),
    ("1", TypeError, r"^convoy\.run: seconds must be a number, got str \('1'\)$"),
], ids=["zero", "negative", "infinite", "nan", "huge", "string"])
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
        assert {"responses", "p50_ms", "p99_ms", "max_ms", "kernel_calls",
                "unavailable"} <= set(one)


def test_convoy_cli_prints_one_row_per_load(capsys):
    status, out, _ = run_cli(capsys, "experiment", "convoy", "--seconds", str(SHORT_S), "--quiet")
    assert status == 0
    rows = re.findall(rf"^{re.escape(row_label(sys.executable))}  ", out, re.M)
    assert len(rows) == len(convoy.LOADS)


# ---- bad options: exit 2, one line, before anything runs ---------------------------------

@pytest.mark.parametrize("argv, message", [
    (["race", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["race", "--n", "many"], "argument --n: must be an integer, got 'many'"),
    (["race", "--n", "1.5"], "argument --n: must be an integer, got '1.5'"),
    (["race", "--n", "100000001"], "argument --n: must be <= 100,000,000, got 100,000,001"),
    (["race", "--repeat", "-1"], "argument --repeat: must be >= 1, got -1"),
    (["race", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
    *[(["convoy", "--seconds", text],
       f"argument --seconds: must be a number > 0 and <= 3600, got {text!r}")
      for text in ("0", "-2", "inf", "nan", "1e30", "soon")],
    (["convoy", "--python", ""],
     "argument --python: must be comma-separated interpreter paths, got ''"),
    (["race", "--python", "a,,b"],
     "argument --python: must be comma-separated interpreter paths, got 'a,,b'"),
    (["race", "--idle-timeout", "-1"],
     "argument --idle-timeout: must be a number of seconds from 0 to 3600, got '-1'"),
    (["convoy", "--idle-timeout", "inf"],
     "argument --idle-timeout: must be a number of seconds from 0 to 3600, got 'inf'"),
], ids=["n-zero", "n-word", "n-float", "n-huge", "repeat-negative", "repeat-zero",
        "seconds-zero", "seconds-negative", "seconds-inf", "seconds-nan", "seconds-1e30",
        "seconds-word", "python-empty", "python-empty-entry", "idle-negative", "idle-inf"])
def test_bad_options_exit_2_with_one_line_before_anything_runs(capsys, argv, message):
    status, out, err = run_cli(capsys, "experiment", *argv)
    assert (status, out) == (2, "")
    assert err == f"gilstudy experiment {argv[0]}: error: {message}\n"


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_json_path_in_a_missing_directory_exits_2_before_running(capsys, tmp_path, experiment):
    path = tmp_path / "missing" / "out.json"
    status, out, err = run_cli(capsys, "experiment", experiment, "--json", str(path))
    assert (status, out) == (2, "")
    assert err == (f"gilstudy experiment {experiment}: error: --json {path}: directory "
                   f"{path.parent} does not exist\n")


# ---- bad interpreters: an error row and one line each, the others still reported ----------

@pytest.fixture
def bad_pythons(tmp_path, monkeypatch) -> dict[str, tuple[str, str]]:
    """Three interpreters that cannot be used, named python* so that --python all finds
    them on PATH: {kind: (path, the reason reported)}. One prints garbage, one answers
    the probe as Python 2.6, one never answers (the probe's patience is cut to 3 s, still
    ample for a real interpreter on a loaded machine)."""
    monkeypatch.setattr(pythons, "PROBE_TIMEOUT_S", 3)
    garbage = executable(tmp_path / "python9", "#!/bin/sh\necho 'Segmentation fault?'\n")
    old = fake_python(tmp_path / "python2.6", "2.6.9")
    hangs = executable(tmp_path / "python3.99", f"#!/bin/sh\nexec {shutil.which('sleep')} 600\n")
    return {
        "garbage": (garbage, f"{garbage}: is not a Python interpreter (asked to run a Python "
                             "script, it printed 'Segmentation fault?' and exited with "
                             "status 0)"),
        "too old": (old, f"{old}: is Python 2.6.9; this needs Python 2.7 or later"),
        "hangs": (hangs, f"{hangs}: no answer for 3 s; the child process was killed"),
    }


def _check_error_rows(status, out, err, experiment, bad, named="--python "):
    assert status == 1
    assert err.splitlines() == [f"gilstudy experiment {experiment}: error: {named}{reason}"
                                for _, reason in bad.values()]
    rows = out.split("\n\n")[0].splitlines()
    for path, reason in bad.values():
        assert re.search(rf"^{re.escape(path)} +no result: error below( +-)+$", "\n".join(rows),
                         re.M)
        assert f"error: {reason}" in out.replace("\n  ", " ")


@pytest.mark.parametrize("experiment, options", [
    ("race", ["--n", "1000"]), ("convoy", ["--seconds", str(SHORT_S)]),
], ids=["race", "convoy"])
def test_bad_interpreters_in_a_list_are_error_rows_and_the_others_are_reported(
        capsys, bad_pythons, experiment, options):
    paths = [sys.executable] + [path for path, _ in bad_pythons.values()]
    status, out, err = run_cli(capsys, "experiment", experiment, *options, "--quiet",
                               "--python", ",".join(paths))
    _check_error_rows(status, out, err, experiment, bad_pythons)
    rows = re.findall(rf"^{re.escape(row_label(sys.executable))}  ", out, re.M)
    assert len(rows) == len(race.VARIANTS if experiment == "race" else convoy.LOADS)


def test_python_all_reports_the_bad_interpreters_it_finds_as_error_rows(
        capsys, bad_pythons, tmp_path, monkeypatch):
    for variable in ("PYENV_ROOT", "GILSTUDY_FTPYTHON"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GILSTUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(capsys, "experiment", "race", "--n", "1000", "--quiet",
                               "--python", "all", "--json", "-")
    assert status == 1
    document = json.loads(out)
    assert [result["executable"] for result in document["results"]] == [sys.executable]
    assert document["errors"] == [{"python": path, "message": reason}
                                  for path, reason in sorted(bad_pythons.values())]
    assert sorted(err.splitlines()) == sorted(
        f"gilstudy experiment race: error: --python {reason}" for _, reason in
        bad_pythons.values())


def test_a_missing_interpreter_is_an_error_row(capsys):
    status, out, err = run_cli(capsys, "experiment", "race", "--n", "100", "--quiet",
                               "--python", f"/nonexistent/python3.13t,{sys.executable}")
    assert status == 1
    assert err == ("gilstudy experiment race: error: --python /nonexistent/python3.13t: no "
                   "such file\n")
    assert "error: /nonexistent/python3.13t: no such file" in out


def test_run_with_a_program_that_is_not_python_raises_value_error(bad_pythons):
    path, reason = bad_pythons["garbage"]
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        race.run(n=10, python=path)


def _wrapper(tmp_path, workload_command: str) -> str:
    """An executable that is this Python for the probe, but runs ``workload_command`` when
    asked to run a workload."""
    return executable(tmp_path / "python", "#!/bin/sh\n"
                      f'case "$2" in *gilstudy-probe*) exec {sys.executable} "$@";; esac\n'
                      f"{workload_command}\n")


def test_a_child_interpreter_that_dies_raises_interpreter_failed(tmp_path):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    with pytest.raises(InterpreterFailed) as caught:
        race.run(n=10, python=python)
    assert str(caught.value) == (f"{python} running the race workload: the child process "
                                 "failed (status 3: Fatal Python error: simulated)")
    assert caught.value.subject == python


def test_a_child_interpreter_that_prints_garbage_raises_interpreter_failed(tmp_path):
    python = _wrapper(tmp_path, "echo 'T-minus 3'")
    with pytest.raises(InterpreterFailed, match=(
            f"^{re.escape(python)} running the convoy workload: printed no result line \\(it "
            "printed 'T-minus 3'\\)$")):
        convoy.run(seconds=SHORT_S, python=python)


def test_a_child_interpreter_that_hangs_is_killed_after_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(_experiment, "TIMEOUT", 1)
    python = _wrapper(tmp_path, f"exec {shutil.which('sleep')} 600")
    with pytest.raises(InterpreterFailed, match=(
            f"^{re.escape(python)} running the race workload: no answer for \\d+ s; the child "
            "process was killed$")):
        race.run(n=10, python=python)


@pytest.mark.parametrize("experiment", ["race", "convoy"])
def test_a_child_interpreter_that_dies_is_an_error_row_and_exit_status_1(capsys, tmp_path,
                                                                        experiment):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    status, out, err = run_cli(capsys, "experiment", experiment, "--python", python, "--quiet")
    reason = (f"{python} running the {experiment} workload: the child process failed (status "
              "3: Fatal Python error: simulated)")
    _check_error_rows(status, out, err, experiment, {"dies": (python, reason)})


# ---- the history: each interpreter this machine has -------------------------------------

@pytest.mark.parametrize("label", [pytest.param(label, marks=pytest.mark.history_python(label))
                                   for label in HISTORY])
def test_history_race_under_each_interpreter(label, history_python):
    result = race.run(n=SMALL_N, python=history_python)
    assert_labelled_as(result, history_python)
    assert_race_facts(result, n=SMALL_N, repeat=1)


@pytest.mark.parametrize("label", [pytest.param(label, marks=pytest.mark.history_python(label))
                                   for label in HISTORY])
def test_history_convoy_under_each_interpreter(label, history_python):
    result = convoy.run(seconds=SHORT_S, python=history_python)
    assert_labelled_as(result, history_python)
    assert_convoy_structure(result)
    assert (result.load("cython").unavailable is None) is (
        history_python.gilstudy_version is not None)


# ---- the history table: race and convoy, one row per interpreter -------------------------

def test_history_prints_one_row_per_interpreter_from_the_json_of_both(capsys, tmp_path):
    for experiment, option in (("race", ["--n", "1000"]), ("convoy", ["--seconds", "0.05"])):
        status, _, _ = run_cli(capsys, "experiment", experiment, *option, "--quiet",
                               "--json", str(tmp_path / f"{experiment}.json"))
        assert status == 0
    status, out, err = run_cli(capsys, "experiment", "history", str(tmp_path / "race.json"),
                               str(tmp_path / "convoy.json"))
    assert (status, err) == (0, "")
    header, rule, *rows = out.splitlines()
    assert header.count(" | ") == rule.count("|") - 2 == 7
    races = race.RaceResult.from_dict(json.loads((tmp_path / "race.json").read_text())["results"][0])
    assert len(rows) == 1
    cells = rows[0].strip("| ").split(" | ")
    assert cells[:2] == [races.label, races.gil_handover]
    assert cells[2] == ", ".join(f"{r.final:,}" for r in races.runs_of("unlocked"))
    assert re.fullmatch(r"\d+ of \d+", cells[7])


@pytest.mark.parametrize("content, message", [
    (None, "{race}: cannot be read: No such file or directory"),
    ("[1, 2]", "{race}: is not the JSON of gilstudy experiment race (it holds no race results)"),
    ("{", "{race}: is not the JSON of gilstudy experiment race (Expecting property name"),
    ('{"experiment": "convoy", "results": []}',
     "{race}: is not the JSON of gilstudy experiment race (it holds no race results)"),
], ids=["missing", "a-list", "not-json", "the-other-experiment"])
def test_history_of_a_file_that_is_not_race_json_exits_2_with_one_line(capsys, tmp_path, content,
                                                                       message):
    race_json = tmp_path / "race.json"
    if content is not None:
        race_json.write_text(content)
    status, out, err = run_cli(capsys, "experiment", "history", str(race_json), str(race_json))
    assert (status, out) == (2, "")
    assert err.startswith("gilstudy experiment history: error: " + message.format(race=race_json))
    assert err.count("\n") == 1


# ---- under the free-threaded interpreter (GILSTUDY_FTPYTHON) -----------------------------

@pytest.fixture(scope="module")
def ft_python() -> str:
    path = os.environ.get(FTPYTHON_VARIABLE, "")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{FTPYTHON_VARIABLE}={path!r} is not an executable file")
    return path


@pytest.mark.ftpython
def test_free_threaded_gil_stays_disabled_after_importing_the_cython_kernels(ft_python):
    code = ("import sys; before = sys._is_gil_enabled(); import gilstudy.kernels.cython as k; "
            "assert k.count_primes(0, 100) == 25; print(before, sys._is_gil_enabled())")
    done = subprocess.run([ft_python, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.ftpython
def test_free_threaded_convoy_runs_the_cython_load_with_the_gil_off(ft_python):
    result = convoy.run(seconds=SHORT_S, python=ft_python)
    assert_convoy_structure(result)
    assert (result.interpreter.endswith("t"), result.gil_enabled) == (True, False)
    assert result.load("cython").unavailable is None
    assert result.environment["free_threaded_build"] is True
