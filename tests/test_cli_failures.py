# Every CLI input of issue 21 that ended in a traceback ends in one line on stderr and exit
# status 2 (bad input) or 1 (a failure while running): a raising --inputs or --function, a
# JSON file that cannot be written (after the table is printed), breakeven durations too
# short to calibrate, a breakeven with only serial models, a deeply nested history JSON;
# absurd --repeat, --min-time and --workers need --force; a hanging --python is stopped after
# GILSTUDY_PYTHON_TIMEOUT seconds.

import argparse
import os

import pytest

from gilstudy import cli, pythons
from gilstudy.compare import limits

pytestmark = [pytest.mark.timeout(300), pytest.mark.one_pass]

QUICK = ["--models", "threads-python", "--workers", "1", "--repeat", "1", "--min-time", "0",
         "--quiet", "--idle-timeout", "0", "--max-outside-load", "inf"]


def run(capsys, *argv):
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_an_inputs_function_that_raises_is_one_line(capsys):
    status, _, err = run(capsys, "compare", "--function", "_cli_functions:work", "--inputs",
                         "_cli_functions:raising_inputs", "--no-footprint", *QUICK)
    assert status == 2
    assert "RuntimeError: the inputs broke" in one_line(err)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["compare", "--size", "2000", "--items", "4",
                                      "--no-footprint"],
                                     ["breakeven", "--durations", "1e-4"]])
def test_results_are_printed_before_a_json_that_cannot_be_written(capsys, command):
    status, out, err = run(capsys, *command, *QUICK, "--json", "/dev/full")
    assert status == 1
    assert out.strip() and "JSON written" not in out
    assert ("the results above were measured, but --json '/dev/full' could not be written: "
            "No space left on device") in one_line(err)


@pytest.mark.parametrize("argv, message", [
    (["breakeven", "--durations", "1e-300", *QUICK], "--durations: each must be at least"),
    (["breakeven", "--models", "serial-python", "--workers", "1"],
     "--models: name at least one model besides the serial ones"),
    (["compare", "--repeat", "100000"], "--repeat must be at most 1000 (or pass --force)"),
    (["compare", "--min-time", "100000"], "--min-time must be at most 3600"),
    (["compare", "--workers", "1,100000"], "--workers must be at most"),
    (["compare", "--repeat", "500", "--min-time", "100", "--workers", "1"],
     "more than a day (pass --force to run it anyway)"),
])
def test_absurd_or_unmeasurable_values_are_refused_in_one_line(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert message in one_line(err)


def test_force_lets_absurd_values_through():
    args = argparse.Namespace(repeat=100000, min_time=100000.0, workers=[1, 100000],
                              models="threads-python", force=True)
    limits.check(args)
    args.force = False
    with pytest.raises(ValueError, match="--repeat must be at most"):
        limits.check(args)


def test_a_breakeven_function_that_raises_is_one_line(capsys):
    status, _, err = run(capsys, "breakeven", "--function", "_cli_functions:raising_work",
                         *QUICK)
    assert status == 1
    assert "RuntimeError: the work broke" in one_line(err)


@pytest.mark.timeout(120)
def test_a_breakeven_function_whose_time_does_not_grow_is_one_line(capsys, monkeypatch):
    from gilstudy.compare import breakeven

    # Calibration doubles the size up to 2**40 looking for the duration; each size is timed
    # for this long (a second by default: 40 s in all).
    monkeypatch.setattr(breakeven, "_CALIBRATE_S", 0.0005)
    status, _, err = run(capsys, "breakeven", "--function", "_cli_functions:constant_work",
                         "--durations", "1e-3", *QUICK)
    assert status == 1
    assert "does the time of --function _cli_functions:constant_work grow with its size" \
        in one_line(err)


def test_a_deeply_nested_history_json_is_one_line(capsys, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    status, _, err = run(capsys, "experiment", "history", str(deep), str(deep))
    assert status == 2
    assert "is not the JSON of gilstudy experiment race" in one_line(err)


def test_a_hanging_python_is_stopped_after_the_timeout_set(capsys, tmp_path, monkeypatch):
    hang = tmp_path / "python"
    hang.write_text("#!/bin/sh\nexec sleep 1000\n")
    hang.chmod(0o755)
    monkeypatch.setenv(pythons.PROBE_TIMEOUT_VARIABLE, "1")
    status, _, err = run(capsys, "compare", "--python", str(hang), "--quiet")
    assert status == 2
    assert "no answer for 1 s" in one_line(err)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "inf"])
def test_a_bad_python_timeout_is_refused(monkeypatch, value):
    monkeypatch.setenv(pythons.PROBE_TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match=r"^GILSTUDY_PYTHON_TIMEOUT must be a positive"):
        pythons.probe_timeout()


def test_experiments_refuse_a_bad_python_timeout_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv(pythons.PROBE_TIMEOUT_VARIABLE, "soon")
    status, _, err = run(capsys, "experiment", "race", "--quiet")
    assert status == 2
    assert "GILSTUDY_PYTHON_TIMEOUT must be a positive number of seconds, got 'soon'" in \
        one_line(err)
