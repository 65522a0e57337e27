# `gilstudy compare` on the command line: every bad option is one line on stderr and exit
# status 2, a wrong answer is exit status 1, and a tiny real run writes its report, JSON
# (in the documented schema) and plot.

import json
import subprocess
import sys

import pytest

from gilstudy import cli
from gilstudy.compare import SCHEMA_VERSION, registry
from gilstudy.compare.cli import worker_counts

TIMEOUT = 120
TINY = ["--size", "3000", "--items", "8", "--repeat", "2", "--idle-timeout", "0", "--quiet"]


def run_cli(capsys, *args):
    """Exit status, stdout and stderr of `gilstudy compare ARGS`."""
    try:
        status = cli.main(["compare", *args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("args, message", [
    (["--kernel", "nope"], "argument --kernel: invalid choice: 'nope' (choose from "
                           "'countdown', 'count_primes', 'mandelbrot')"),
    (["--models", "nope"], "unknown model 'nope'; models: " + ", ".join(registry.names())),
    (["--models", "gpu-*"], "model pattern 'gpu-*' matches no model; models: "
                            + ", ".join(registry.names())),
    (["--workers", "0"], "argument --workers: each count must be >= 1, got 0"),
    (["--workers", "1,two"], "argument --workers: must be comma-separated integers such as "
                             "1,2,4, got '1,two'"),
    (["--workers", ""], "argument --workers: must be comma-separated integers such as 1,2,4, "
                        "got ''"),
    (["--size", "-5"], "count_primes: size must be >= 1, got -5"),
    (["--size", "lots"], "argument --size: invalid int value: 'lots'"),
    (["--size", str(2**70)], f"count_primes: hi must fit in a C long (<= {2**63 - 1}), "
                             f"got {2**70}"),
    (["--kernel", "mandelbrot", "--size", "10", "--items", "20"],
     "mandelbrot: items (20) must be <= size (10), so that every item has some work"),
    (["--items", "0"], "argument --items: must be >= 1, got 0"),
    (["--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
    (["--plot", "/no/such/dir/plot.png"], "--plot: directory '/no/such/dir' does not exist"),
    (["--idle-timeout", "-1"], "argument --idle-timeout: must be >= 0, got -1"),
], ids=["kernel", "model", "pattern", "workers-0", "workers-syntax", "workers-empty", "size-neg",
        "size-text", "size-huge", "items>rows", "items-0", "repeat-0", "plot-dir", "idle"])
def test_a_bad_option_is_one_line_on_stderr_and_exit_status_2(capsys, args, message):
    status, out, err = run_cli(capsys, *args)
    assert status == 2
    assert err == f"gilstudy compare: error: {message}\n"
    assert out == ""


def test_worker_counts_are_sorted_and_deduplicated():
    assert worker_counts("4,1,2,2") == [1, 2, 4]


@pytest.mark.timeout(TIMEOUT)
def test_a_wrong_answer_is_exit_status_1_with_one_line(capsys):
    def start(workload, impl, workers):
        return WrongWorkers()

    class WrongWorkers:
        def run(self, workload, patience_s):
            return -1

        def close(self):
            pass

    with registry.registered(registry.Model("wrong-python", "python", "always -1", start)):
        status, out, err = run_cli(capsys, "--models", "wrong-python", "--workers", "1", *TINY)
    assert status == 1
    assert err == ("gilstudy compare: error: wrong-python with 1 worker computed a wrong answer "
                   "for count_primes(0, 3000) in 8 items (repeat 1): got -1, serial-python got "
                   "430\n")


@pytest.mark.timeout(TIMEOUT)
def test_a_failing_model_is_exit_status_1_with_one_line(capsys):
    def start(workload, impl, workers):
        raise OSError("out of\nprocesses")

    with registry.registered(registry.Model("crash-python", "python", "cannot start", start)):
        status, out, err = run_cli(capsys, "--models", "crash-python", "--workers", "1", *TINY)
    assert (status, out) == (1, "")
    assert err == ("gilstudy compare: error: crash-python with 1 worker: starting its workers "
                   "failed: OSError: out of processes\n")


@pytest.mark.timeout(TIMEOUT)
def test_a_bad_option_from_the_shell_prints_no_traceback():
    done = subprocess.run([sys.executable, "-m", "gilstudy", "compare", "--workers", "0,x"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# The keys of every JSON document, schema 2 (documented in gilstudy/compare/report.py).
SCHEMA = {
    "schema_version": int, "tool": str, "gilstudy_version": str, "created": str,
    "workload": {"kernel": str, "size": int, "size_means": str, "items": int,
                 "whole_args": list, "answer": object},
    "settings": {"workers": list, "repeat": int, "models": list, "reference": str,
                 "pythons": list},
    "environment": {"machine": dict, "build": dict, "versions": dict, "idle_check": dict,
                    "reference_run_s": float,
                    "interpreters": [{"label": str, "default": bool, "executable": str,
                                      "gil_enabled": bool, "reference_run_s": float,
                                      "machine": dict, "build": dict, "versions": dict}]},
    "models": [{"name": str, "impl": str, "summary": str, "available": bool,
                "reason": (str, type(None)), "reusable": bool,
                "max_workers": (int, type(None)), "shares_gil": bool, "interpreter": str}],
    "rows": [{"model": str, "interpreter": str, "gil_enabled": bool, "impl": str,
              "workers": int, "oversubscribed": bool,
              "restarted_per_repeat": bool, "startup_s": list, "work_s": list,
              "median_s": float, "spread": float, "speedup_vs_serial": float,
              "speedup_vs_own_serial": float,
              "speedup_vs_own_1": (float, type(None)), "efficiency": (float, type(None))}],
    "projections": [{"model": str, "interpreter": str, "law": str, "points": list,
                     "params": (dict, type(None)), "rms_error": (float, type(None)),
                     "projected": (dict, type(None)), "reason": (str, type(None))}],
    "verdict": list,
}
ENVIRONMENT = {
    "machine": {"python", "interpreter", "gil_enabled", "cpu_model", "usable_cores"},
    "build": {"cython_version", "compiler", "cflags", "openmp"},
    "versions": {"python", "numpy", "cython", "joblib"},
    "idle_check": {"idle", "busy_cores", "waited_s", "measured", "text"},
}


def check_schema(document, schema, where="document"):
    if isinstance(schema, dict):
        assert isinstance(document, dict), where
        assert set(document) == set(schema), f"{where}: keys {sorted(document)}"
        for key, sub in schema.items():
            check_schema(document[key], sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(document, list) and document, where
        for i, entry in enumerate(document):
            check_schema(entry, schema[0], f"{where}[{i}]")
    else:
        assert isinstance(document, schema), f"{where}: {document!r}"


@pytest.mark.timeout(TIMEOUT)
def test_a_tiny_run_prints_the_report_and_writes_json_and_png(capsys, tmp_path):
    json_path, png_path = tmp_path / "compare.json", tmp_path / "compare.png"
    status, out, err = run_cli(capsys, *TINY, "--workers", "1,2", "--markdown",
                               "--json", str(json_path), "--plot", str(png_path))
    assert status == 0, err
    assert err == ""
    assert "| model | workers | start-up s | median s | spread | vs serial-python |" in out
    assert "\nVerdict:\n- Fastest for count_primes here: " in out
    assert "PROJECTION, not a measurement" in out
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    document = json.loads(json_path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION == 2
    check_schema(document, SCHEMA)
    for key, keys in ENVIRONMENT.items():
        assert keys <= set(document["environment"][key]), key
    assert document["workload"]["answer"] == 430
    assert document["settings"]["workers"] == [1, 2]
    available = [m["name"] for m in document["models"] if m["available"]]
    assert {r["model"] for r in document["rows"]} == set(available)
    assert all(len(r["work_s"]) == 2 for r in document["rows"])
    assert all(m["reason"] for m in document["models"] if not m["available"])
    [interpreter] = document["environment"]["interpreters"]
    assert interpreter["default"] and interpreter["executable"] == sys.executable
    assert {r["interpreter"] for r in document["rows"]} == {interpreter["label"]}
    assert document["settings"]["pythons"] == []


def test_the_progress_bar_redraws_one_line_and_clears_it():
    import io

    from gilstudy.compare.cli import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar(1, 4, "serial-python w1")
    bar(4, 4, "pool")
    bar.finish()
    first = "[" + "#" * 7 + "." * 23 + "] 1/4 serial-python w1"
    second = "[" + "#" * 30 + "] 4/4 pool"
    assert stream.getvalue() == ("\r" + first + "\r" + second.ljust(len(first))
                                 + "\r" + " " * len(second) + "\r")
