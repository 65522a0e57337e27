# `gilstudy compare --python`: a bad interpreter is one line naming its path and the
# problem, before anything runs; another interpreter's rows are labelled model@label and
# merged into one result whose speedups divide the default interpreter's serial-python
# and the row's own; interpreters take turns within each repeat; an interpreter that
# disagrees or dies is an error, never a row. The merge is tested with this interpreter
# given again (so it runs anywhere); GILSTUDY_FTPYTHON adds a real free-threaded run.

import json
import os
import re
import stat
import subprocess
import sys
import time

import pytest

from gilstudy import compare, machine, pythons
from gilstudy.compare import document, registry, report
from gilstudy.compare.remote_session import PROTOCOL_VERSION, checked, probe
from gilstudy.errors import InterpreterFailed, ModelFailed, RemoteError, WrongAnswer
from test_compare_cli import SCHEMA, check_schema, run_cli
from conftest import FTPYTHON_VARIABLE
from test_compare_run import fake_model
from test_pythons import python_without_gilstudy  # noqa: F401 (a fixture)

pytestmark = pytest.mark.one_pass

# Only reached in case of a deadlock.
TIMEOUT = 120

TINY = dict(kernel="count_primes", size=3000, items=8, repeat=2, idle_timeout_s=0, min_time_s=0,
            max_outside_cores=float("inf"))
MODELS = "serial-python,threads-python"
HERE = machine.interpreter_label()
AGAIN = f"{HERE}#2"  # the label of this interpreter given again


def executable(path, text: str):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---- bad --python values ---------------------------------------------------------------

def _missing(tmp_path):
    return str(tmp_path / "python3.13t"), "no such file"


def _directory(tmp_path):
    return str(tmp_path), "is a directory, not a Python interpreter"


def _not_executable(tmp_path):
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n")
    return str(path), "is not executable"


def _not_python(tmp_path):
    return "/bin/true", ("is not a Python interpreter (asked to run a Python script, it "
                         "printed nothing and exited with status 0)")


def _not_on_path(tmp_path):
    return "no-such-python-here", "no such file, and no such command on PATH"


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("case", [_missing, _directory, _not_executable, _not_python,
                                  _not_on_path],
                         ids=["missing", "directory", "not-executable", "not-python", "no-command"])
def test_a_bad_python_is_rejected_naming_its_path_and_the_problem(tmp_path, case):
    path, problem = case(tmp_path)
    with pytest.raises(ValueError, match=f"^pythons: {re.escape(path)}: {re.escape(problem)}$"):
        compare.run(pythons=[path], **TINY)


@pytest.mark.timeout(TIMEOUT)
def test_a_python_without_gilstudy_is_rejected(python_without_gilstudy):
    python = python_without_gilstudy
    with pytest.raises(ValueError, match=(
            f"^{re.escape(python)}: gilstudy is not installed there \\(install it there with "
            "pip, or run make ftpython for the free-threaded build\\)$")):
        probe(python)


# A gilstudy put first on PYTHONPATH: one from before --python, one of another schema.
_OLD_GILSTUDY = {"gilstudy/__init__.py": "__version__ = '0.0.1'\n"}
_OTHER_SCHEMA = {
    "gilstudy/__init__.py": "__version__ = '0.0.2'\n",
    "gilstudy/compare/__init__.py": "",
    "gilstudy/compare/child.py": (
        "def identify():\n"
        "    return {'protocol': 1, 'schema': 1, 'gilstudy': '0.0.2', 'label': '3.11',\n"
        "            'gil_enabled': True, 'models': []}\n"),
}


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("files, problem", [
    (_OLD_GILSTUDY, "its gilstudy 0.0.1 is too old (it has no gilstudy.compare.child): "
                    "install this gilstudy there"),
    (_OTHER_SCHEMA, f"its gilstudy 0.0.2 writes compare schema 1 over --python protocol 1, "
                    f"this one schema {compare.SCHEMA_VERSION} over protocol "
                    f"{PROTOCOL_VERSION}: install this gilstudy there"),
], ids=["too-old", "other-schema"])
def test_a_python_with_another_gilstudy_is_rejected(tmp_path, monkeypatch, files, problem):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(ValueError, match=f"^{re.escape(sys.executable)}: {re.escape(problem)}$"):
        probe(sys.executable)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("value, message", [
    ("/no/such/python3.13t", "--python /no/such/python3.13t: no such file"),
    ("/bin/true", "--python /bin/true: is not a Python interpreter (asked to run a Python "
                  "script, it printed nothing and exited with status 0)"),
    (f"{sys.executable},", f"argument --python: must be comma-separated interpreter paths, "
                           f"got '{sys.executable},'"),
], ids=["missing", "not-python", "empty-entry"])
def test_a_bad_python_on_the_command_line_is_one_line_and_exit_status_2(capsys, value, message):
    status, out, err = run_cli(capsys, "--python", value, "--quiet")
    assert (status, out, err) == (2, "", f"gilstudy compare: error: {message}\n")


@pytest.mark.timeout(TIMEOUT)
def test_a_python_probed_for_another_purpose_is_probed_again_for_compare():
    plain = pythons.probe(sys.executable)
    assert plain.identity == {}
    python = checked(plain, option="--python")
    assert python.identity["schema"] == compare.SCHEMA_VERSION
    assert checked(python, option="--python") is python


def test_the_child_entry_point_refuses_to_run_without_serve():
    done = subprocess.run([sys.executable, "-m", "gilstudy.compare"], capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m gilstudy.compare --serve\n")


# ---- one merged run, this interpreter given twice ---------------------------------------

@pytest.fixture(scope="module")
def merged():
    """A tiny merged run with this interpreter as the second one too, and its progress."""
    steps = []
    result = compare.run(models=MODELS, workers=[1, 2], pythons=[sys.executable],
                         progress=lambda done, total, what: steps.append((done, total, what)),
                         **TINY)
    return result, steps


@pytest.mark.timeout(TIMEOUT)
def test_every_model_gets_a_row_per_interpreter_labelled_by_it(merged):
    result, _ = merged
    assert [(r.model, r.interpreter, r.workers) for r in result.rows] == [
        ("serial-python", HERE, 1), ("serial-python", AGAIN, 1),
        ("threads-python", HERE, 1), ("threads-python", HERE, 2),
        ("threads-python", AGAIN, 1), ("threads-python", AGAIN, 2)]
    assert all(len(r.work_s) == TINY["repeat"] for r in result.rows)
    assert all(r.gil_enabled == machine.gil_enabled() for r in result.rows)
    assert [(i.label, i.is_default) for i in result.interpreters] == [(HERE, True), (AGAIN, False)]
    assert result.interpreters[0].executable == sys.executable
    assert [(m.name, m.interpreter) for m in result.models] == [
        ("serial-python", HERE), ("serial-python", AGAIN),
        ("threads-python", HERE), ("threads-python", AGAIN)]


@pytest.mark.timeout(TIMEOUT)
def test_speedups_divide_the_default_reference_and_the_rows_own_reference(merged):
    result, _ = merged
    default_serial = result.rows_of("serial-python")[0].median_s
    for row in result.rows:
        own_serial = result.rows_of("serial-python", row.interpreter)[0].median_s
        own_1 = result.rows_of(row.model, row.interpreter)[0].median_s
        assert row.speedup_vs_serial == pytest.approx(default_serial / row.median_s)
        assert row.speedup_vs_own_serial == pytest.approx(own_serial / row.median_s)
        assert row.speedup_vs_own_1 == pytest.approx(own_1 / row.median_s)
    assert result.rows_of("serial-python", HERE)[0].speedup_vs_serial == 1.0
    assert result.rows_of("serial-python", AGAIN)[0].speedup_vs_own_serial == 1.0


@pytest.mark.timeout(TIMEOUT)
def test_the_interpreters_take_turns_within_each_repeat(merged):
    result, steps = merged
    assert steps[0] == (0, len(steps) - 1, "waiting for idle CPUs")
    steps = steps[1:]
    runs_at_1 = [f"{m}@{label} w1" for label in (HERE, AGAIN)
                 for m in ("serial-python", "threads-python")]
    runs_at_2 = [f"threads-python@{label} w2" for label in (HERE, AGAIN)]
    assert [what for _, _, what in steps] == [
        f"serial-python@{HERE} reference run", f"serial-python@{AGAIN} reference run",
        *[f"{what} start" for what in runs_at_1], *runs_at_1, *runs_at_1,
        *[f"{what} start" for what in runs_at_2], *runs_at_2, *runs_at_2]
    total = len(steps)
    assert [(done, all_) for done, all_, _ in steps] == [(n, total) for n in range(1, total + 1)]


@pytest.mark.timeout(TIMEOUT)
def test_the_json_of_a_merged_run_follows_the_schema_with_each_interpreter(merged):
    result, _ = merged
    saved = json.loads(document.to_json(result))
    check_schema(saved, SCHEMA)
    assert saved["settings"]["models"] == ["serial-python", "threads-python"]
    assert len(saved["settings"]["pythons"]) == 1
    interpreters = saved["environment"]["interpreters"]
    assert [(i["label"], i["default"]) for i in interpreters] == [(HERE, True), (AGAIN, False)]
    assert all(i["machine"]["python"] == machine.describe()["python"] for i in interpreters)
    assert {(r["model"], r["interpreter"]) for r in saved["rows"]} == {
        (m, label) for m in ("serial-python", "threads-python") for label in (HERE, AGAIN)}
    assert {p["interpreter"] for p in saved["projections"]} == {HERE, AGAIN}


@pytest.mark.timeout(TIMEOUT)
def test_the_report_of_a_merged_run_names_each_model_at_its_interpreter(merged):
    result, _ = merged
    table = report.table(result)
    assert table.startswith("model ")
    assert f"vs serial-python@{HERE}  vs serial-python@own  vs own 1 worker" in table
    assert f"\nthreads-python@{AGAIN} " in table
    header = report.header(result).splitlines()
    assert header[1] == (f"@{HERE}: python {machine.describe()['python']}, GIL "
                         f"{'enabled' if machine.gil_enabled() else 'disabled'}: "
                         f"{sys.executable} (the default)")
    assert header[2].startswith(f"@{AGAIN}: python ")
    assert any(line.startswith(f"Single thread: serial-python@{AGAIN} (GIL ")
               for line in report.verdict(result).splitlines())


# ---- the other interpreter disagrees, lacks a model, dies --------------------------------

def _wrapper(tmp_path, serve_command: str):
    """An executable that is this Python for the probe, but serves with ``serve_command``."""
    return str(executable(tmp_path / "python", (
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then exec {sys.executable} "$@"; fi\n'
        f"{serve_command}\n")))


def _serving_after(setup: str) -> str:
    """A child's -c script: ``setup``, then serve the parent as `-m gilstudy.compare --serve`."""
    return (f"{setup}\n"
            "import sys\n"
            "from gilstudy.compare.child import child_main\n"
            "sys.exit(child_main(['--serve']))\n")


# In the child: count_primes answers one more than it should.
_OFF_BY_ONE = _serving_after(
    "import dataclasses\n"
    "from gilstudy.compare import workload\n"
    "work = workload._WORK['count_primes']\n"
    "workload._WORK['count_primes'] = dataclasses.replace(work, combine=lambda r: sum(r) + 1)")


@pytest.mark.timeout(TIMEOUT)
def test_an_interpreter_with_another_answer_is_an_error_never_a_row(tmp_path):
    python = _wrapper(tmp_path, f"exec {sys.executable} -c \"{_OFF_BY_ONE}\"")
    with pytest.raises(WrongAnswer, match=(
            f"^serial-python@{re.escape(AGAIN)} \\({re.escape(sys.executable)}\\) computed a "
            f"different answer for count_primes\\(0, 3000\\) in 8 items: got 431, "
            f"serial-python@{re.escape(HERE)} got 430$")) as caught:
        compare.run(models="serial-python", workers=[1], pythons=[python], **TINY)
    assert caught.value.subject == f"serial-python@{AGAIN}"


@pytest.mark.timeout(TIMEOUT)
def test_an_interpreter_that_dies_is_an_error_naming_it_and_its_last_words(tmp_path):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    with pytest.raises(InterpreterFailed, match=(
            f"^--python {re.escape(python)} \\({re.escape(AGAIN)}\\): the child process exited "
            "early \\(status 3: Fatal Python error: simulated\\)$")) as caught:
        compare.run(models="serial-python", workers=[1], pythons=[python], **TINY)
    assert caught.value.subject == python


@pytest.mark.timeout(TIMEOUT)
def test_an_interpreter_that_breaks_the_protocol_is_killed_and_interpreter_failed(tmp_path):
    python = _wrapper(tmp_path, "echo 'T-minus 3'; exec sleep 600")
    start = time.monotonic()
    with pytest.raises(InterpreterFailed, match=(
            f"^--python {re.escape(python)} \\({re.escape(AGAIN)}\\): the child process wrote "
            "'T-minus 3', which is not the --python protocol$")) as caught:
        compare.run(models="serial-python", workers=[1], pythons=[python], **TINY)
    assert caught.value.subject == python
    # Killed at once: waiting for it to exit when asked would take EXIT_TIMEOUT_S (60 s).
    assert time.monotonic() - start < pythons.EXIT_TIMEOUT_S / 2


# In the child: crash-python cannot start its workers there (here it runs).
_CRASH_THERE = _serving_after(
    "from gilstudy.compare import registry\n"
    "def start(workload, impl, workers):\n"
    "    raise OSError('out of processes')\n"
    "registry.register(registry.Model('crash-python', 'python', 'fails', start))")


@pytest.mark.timeout(TIMEOUT)
def test_a_model_failing_under_the_other_interpreter_is_model_failed_naming_it(tmp_path):
    python = _wrapper(tmp_path, f"exec {sys.executable} -c \"{_CRASH_THERE}\"")
    with registry.registered(fake_model("crash-python", [])):
        with pytest.raises(ModelFailed) as caught:
            compare.run(models="crash-python", workers=[1], pythons=[python], **TINY)
    assert str(caught.value) == (f"crash-python@{AGAIN} with 1 worker: starting its workers "
                                 "failed: OSError: out of processes")
    assert caught.value.subject == f"crash-python@{AGAIN}"
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteError) and cause.remote_type == "ModelFailed"
    assert "OSError: out of processes" in cause.remote_traceback


@pytest.mark.timeout(TIMEOUT)
def test_an_interpreter_that_dies_is_exit_status_1_with_one_line(capsys, tmp_path):
    python = _wrapper(tmp_path, "echo 'Fatal Python error: simulated' >&2; exit 3")
    status, out, err = run_cli(capsys, "--size", "3000", "--items", "8", "--repeat", "1",
                               "--idle-timeout", "0", "--quiet", "--models", "serial-python",
                               "--workers", "1", "--python", python)
    assert (status, out) == (1, "")
    assert err == (f"gilstudy compare: error: --python {python} ({AGAIN}): the child process "
                   "exited early (status 3: Fatal Python error: simulated)\n")


@pytest.mark.timeout(TIMEOUT)
def test_a_model_registered_only_here_is_unavailable_under_the_other_interpreter():
    log = []
    with registry.registered(fake_model("local-python", log)):
        result = compare.run(models="local-python", workers=[1], pythons=[sys.executable],
                             **TINY)
    assert result.unavailable == {
        f"local-python@{AGAIN}": f"not registered in the gilstudy of {sys.executable}"}
    assert [(r.model, r.interpreter) for r in result.rows] == [
        ("serial-python", HERE), ("serial-python", AGAIN), ("local-python", HERE)]


@pytest.mark.timeout(TIMEOUT)
def test_the_command_line_merges_into_one_table_json_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    json_path, png_path = tmp_path / "compare.json", tmp_path / "compare.png"
    status, out, err = run_cli(
        capsys, "--size", "3000", "--items", "8", "--repeat", "1", "--idle-timeout", "0",
        "--quiet", "--min-time", "0", "--models", MODELS, "--workers", "1,2",
        "--python", sys.executable, "--no-footprint", "--markdown", "--json", str(json_path),
        "--plot", str(png_path))
    assert (status, err) == (0, "")
    assert (f"| model | workers | start-up s | passes | median s | spread | "
            f"vs serial-python@{HERE} | vs serial-python@own | vs own 1 worker | "
            "efficiency |") in out
    assert f"\n| serial-python@{AGAIN} | 1 |" in out
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(json_path.read_text())
    check_schema(saved, SCHEMA)
    assert [r["interpreter"] for r in saved["rows"]] == [HERE, AGAIN, HERE, HERE, AGAIN, AGAIN]


# ---- a real free-threaded interpreter ------------------------------------------------------

def _ftpython() -> str:
    """The interpreter GILSTUDY_FTPYTHON names. Without it, a test that was asked for
    (``-m ftpython``; otherwise conftest deselects them) fails, saying why."""
    path = os.environ.get(FTPYTHON_VARIABLE)
    if not path:
        pytest.fail(f"{FTPYTHON_VARIABLE} is not set: point it at a free-threaded python with "
                    "gilstudy installed (e.g. .venv-3.13t/bin/python) to run the ftpython "
                    "tests", pytrace=False)
    return path


@pytest.mark.ftpython
@pytest.mark.timeout(TIMEOUT)
def test_a_free_threaded_interpreter_is_merged_with_its_gil_disabled():
    result = compare.run(models=MODELS, workers=[1, 2], pythons=[_ftpython()], **TINY)
    free = result.interpreters[1]
    assert re.fullmatch(r"3\.\d+t(#\d+)?", free.label) and not free.gil_enabled
    assert free.environment["machine"]["free_threaded_build"]
    rows = [r for r in result.rows if r.interpreter == free.label]
    assert [(r.model, r.workers) for r in rows] == [
        ("serial-python", 1), ("threads-python", 1), ("threads-python", 2)]
    assert not any(r.gil_enabled for r in rows)
    saved = document.to_dict(result)
    assert [r["gil_enabled"] for r in saved["rows"] if r["interpreter"] == free.label] == [
        False, False, False]
    cost = [line for line in report.verdict(result).splitlines() if line.startswith("Single thread")]
    assert len(cost) == 1 and f"threads-python@{free.label} ran " in cost[0]


@pytest.mark.ftpython
@pytest.mark.timeout(TIMEOUT)
def test_a_users_function_runs_under_the_free_threaded_interpreter_too():
    result = compare.run(function="_compare_functions:sum_of_squares",
                         inputs="_compare_functions:INPUTS",
                         nogil="_compare_functions:sum_of_squares_closed_form",
                         models="serial-*,threads-*", workers=[1, 2], pythons=[_ftpython()],
                         **{k: v for k, v in TINY.items() if k not in ("kernel", "size", "items")})
    free = result.interpreters[1].label
    assert [(r.model, r.workers) for r in result.rows if r.interpreter == free] == [
        ("serial-python", 1), ("serial-nogil", 1), ("threads-python", 1), ("threads-python", 2),
        ("threads-nogil", 1), ("threads-nogil", 2)]
