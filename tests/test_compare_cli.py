# `gilstudy compare` on the command line: every bad option is one line on stderr and exit
# status 2, a wrong answer is exit status 1, and a tiny real run writes its report, JSON
# (in the documented schema) and plot.

import json
import subprocess
import sys

import pytest

from gilstudy import cli, machine
from gilstudy.compare import SCHEMA_VERSION, registry
from gilstudy.compare.cli import worker_counts
from gilstudy.compare.style import plot_suffixes

pytestmark = pytest.mark.one_pass

TIMEOUT = 120
TINY = ["--size", "3000", "--items", "8", "--repeat", "2", "--idle-timeout", "0", "--quiet",
        "--min-time", "0", "--max-outside-load", "inf"]


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
    (["--idle-timeout", "-1"], "argument --idle-timeout: must be a finite number >= 0, got -1"),
], ids=["kernel", "model", "pattern", "workers-0", "workers-syntax", "workers-empty", "size-neg",
        "size-text", "size-huge", "items>rows", "items-0", "repeat-0", "plot-dir", "idle"])
def test_a_bad_option_is_one_line_on_stderr_and_exit_status_2(capsys, args, message):
    status, out, err = run_cli(capsys, *args)
    assert status == 2
    assert err == f"gilstudy compare: error: {message}\n"
    assert out == ""


MEMORY = machine._bytes_text(machine.memory_bytes())
SUFFIXES = ", ".join(plot_suffixes())


# Inputs that used to end in a traceback, or only after the whole run (issue 14, item 9), and
# the options of this issue: each is refused before anything runs, in one line, status 2.
@pytest.mark.parametrize("command, args, message", [
    ("compare", ["--kernel", "mandelbrot", "--size", "1000000000"],
     "mandelbrot: size 1000000000 (a 1000000000 x 1000000000 uint32 image, held about 3 times "
     f"over) needs 10,913,936.4 TiB of memory; this machine has {MEMORY}"),
    ("compare", ["--json", "{tmp}"], "--json: '{tmp}' is a directory; name a file to write"),
    ("compare", ["--plot", "{tmp}/x.unknownext"],
     f"--plot: matplotlib cannot write '.unknownext' files; name a file ending in one of "
     f"{SUFFIXES}"),
    ("compare", ["--plot", "{tmp}"], "--plot: '{tmp}' is a directory; name a file to write"),
    ("compare", ["--json", "/no/such/dir/x.json"],
     "--json: directory '/no/such/dir' does not exist"),
    ("compare", ["--min-time", "inf"], "argument --min-time: must be a finite number >= 0, "
                                       "got inf"),
    ("compare", ["--min-time", "-0.1"], "argument --min-time: must be a finite number >= 0, "
                                        "got -0.1"),
    ("compare", ["--max-outside-load", "0"],
     "argument --max-outside-load: must be > 0 (inf: never run a repeat again), got 0"),
    ("compare", ["--reruns", "-1"], "argument --reruns: must be >= 0, got -1"),
    ("compare", ["--function", "no_such_module:f", "--inputs", "x:y"],
     "--function: cannot import module 'no_such_module': ModuleNotFoundError: No module named "
     "'no_such_module'"),
    ("compare", ["--function", "_compare_functions:nope", "--inputs", "x:y"],
     "--function: module '_compare_functions' has no 'nope'"),
    ("compare", ["--function", "_compare_functions", "--inputs", "x:y"],
     "--function: must be MODULE:NAME, such as mymodule:myfunction, got '_compare_functions'"),
    ("compare", ["--function", "_compare_functions:INPUTS", "--inputs", "x:y"],
     "--function: _compare_functions:INPUTS must be callable, got list"),
    ("compare", ["--function", "_compare_functions:sum_of_squares",
                 "--inputs", "_compare_functions:NOT_TUPLES"],
     "--inputs: item 0 must be a tuple of arguments, such as (x,) for one argument, got int (1)"),
    ("compare", ["--function", "_compare_functions:sum_of_squares"],
     "--function needs --inputs MODULE:NAME, an iterable of argument tuples or a function "
     "returning one"),
    ("compare", ["--function", "_compare_functions:sum_of_squares", "--inputs",
                 "_compare_functions:INPUTS", "--size", "10"],
     "--function cannot go with --size: its inputs are the items"),
    ("compare", ["--nogil", "_compare_functions:sum_of_squares"],
     "--nogil goes with --function MODULE:NAME, which is missing"),
    ("breakeven", ["--json", "{tmp}"], "--json: '{tmp}' is a directory; name a file to write"),
    ("breakeven", ["--plot", "{tmp}/x.unknownext"],
     f"--plot: matplotlib cannot write '.unknownext' files; name a file ending in one of "
     f"{SUFFIXES}"),
    ("breakeven", ["--durations", "0,1e-3"],
     "argument --durations: each duration must be > 0 and at most 10 s, got 0"),
    ("breakeven", ["--durations", "fast"],
     "argument --durations: must be comma-separated seconds such as 1e-5,1e-3,0.1, got 'fast'"),
    ("breakeven", ["--function", "no_such_module:f"],
     "--function: cannot import module 'no_such_module': ModuleNotFoundError: No module named "
     "'no_such_module'"),
    ("breakeven", ["--function", "_compare_functions:digest", "--kernel", "countdown"],
     "--function cannot go with --kernel"),
    ("breakeven", ["--models", "nope"], "unknown model 'nope'; models: "
                                        + ", ".join(registry.names())),
    ("breakeven", ["--workers", "0"], "argument --workers: each count must be >= 1, got 0"),
], ids=["mandelbrot-memory", "json-dir", "plot-suffix", "plot-dir", "json-no-dir",
        "min-time-inf", "min-time-neg", "outside-0", "reruns-neg", "function-no-module",
        "function-no-name", "function-no-colon", "function-not-callable", "inputs-not-tuples",
        "function-no-inputs", "function-and-size", "nogil-alone", "b-json-dir", "b-plot-suffix",
        "b-durations-0", "b-durations-text", "b-function-no-module", "b-function-and-kernel",
        "b-model", "b-workers"])
def test_bad_input_is_refused_before_any_work_in_one_line(capsys, tmp_path, command, args,
                                                         message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    try:
        status = cli.main([command, *args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == f"gilstudy {command}: error: {message.replace('{tmp}', str(tmp_path))}\n"


@pytest.mark.timeout(TIMEOUT)
def test_a_plot_named_without_a_suffix_is_written_and_reported_as_png(capsys, tmp_path):
    status, out, err = run_cli(capsys, *TINY, "--workers", "1", "--models", "serial-*",
                               "--no-footprint", "--plot", str(tmp_path / "speedups"))
    assert status == 0, err
    assert out.endswith(f"plot written to {tmp_path / 'speedups.png'}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speedups.png"]


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

    with registry.registered(registry.Model("wrong-python", "python", "always -1", start,
                                            dispatches_items=False)):
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


# The keys of every JSON document, schema 3 (documented in gilstudy/compare/document.py).
REPEAT = {"pass_s": list, "outside_cores": (float, type(None)), "tries": int, "disturbed": bool}
SCHEMA = {
    "schema_version": int, "tool": str, "gilstudy_version": str, "created": str,
    "workload": {"kind": str, "name": str, "size": int, "size_means": str, "items": int,
                 "whole_args": list, "answer": object},
    "settings": {"workers": list, "repeat": int, "models": list, "reference": str,
                 "pythons": list, "timing": {"min_time_s": (int, float),
                                             "max_outside_cores": (float, type(None)),
                                             "reruns": int}},
    "environment": {"machine": dict, "build": dict, "versions": dict, "idle_check": dict,
                    "outside_load": {"repeats": int, "disturbed": int, "reruns": int,
                                     "stayed_disturbed": int,
                                     "max_outside_cores": (float, type(None)), "text": str},
                    "reference_run_s": float,
                    "interpreters": [{"label": str, "default": bool, "executable": str,
                                      "gil_enabled": bool, "reference_run_s": float,
                                      "machine": dict, "build": dict, "versions": dict}]},
    "models": [{"name": str, "registered_as": str, "impl": str, "summary": str,
                "available": bool, "reason": (str, type(None)), "reusable": bool,
                "max_workers": (int, type(None)), "shares_gil": bool, "interpreter": str,
                "family": str, "quick": bool}],
    "rows": [{"model": str, "interpreter": str, "gil_enabled": bool, "impl": str,
              "workers": int, "oversubscribed": bool,
              "restarted_per_repeat": bool, "startup_s": list,
              "dispatch_s": (float, type(None)), "work_s": list, "passes": list,
              "repeats": [REPEAT], "set_aside": list,
              "median_s": float, "spread": float, "speedup_vs_serial": float,
              "speedup_vs_own_serial": float,
              "speedup_vs_own_1": (float, type(None)), "efficiency": (float, type(None))}],
    "ceilings": [{"model": str, "interpreter": str, "workers": int,
                  "dispatch_s": (float, type(None)), "item_s": (float, type(None)),
                  "bound": (float, type(None)), "at": dict}],
    "projections": [{"model": str, "interpreter": str, "law": str, "points": list,
                     "params": (dict, type(None)), "rms_error": (float, type(None)),
                     "projected": (dict, type(None)), "reason": (str, type(None))}],
    "footprints": list, "footprint_kernel": (str, type(None)),
    "verdict": list,
    "answer": {"model": str, "workers": int, "speedup_vs_serial": float, "spread": float,
               "range": list, "ties": list, "tied": list, "min_item_s": (float, type(None)),
               "item_s": float, "dispatch_s": (float, type(None)),
               "python": (dict, type(None)), "threads": (dict, type(None)), "next": str,
               "code": (str, type(None)), "text": list},
}
FOOTPRINT = {"kind": str, "interpreter": str, "workers": int,
             "startup_s": (float, type(None)), "startup_per_worker_s": (float, type(None)),
             "rss_bytes": (int, type(None)), "pss_bytes": (int, type(None)),
             "unavailable": (str, type(None))}
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


# Every model but those that start an MPI job or a Dask cluster (seconds each: they run once,
# in tests/test_compare_cluster_models.py).
ONE_MACHINE_MODELS = ",".join(name for name in registry.names()
                              if not name.startswith(("mpi-", "mpipool-", "dask-")))


@pytest.mark.timeout(3 * TIMEOUT)  # every model starts twice: slow on a loaded machine
def test_a_tiny_run_prints_the_report_and_writes_json_and_png(capsys, tmp_path):
    json_path, png_path = tmp_path / "compare.json", tmp_path / "compare.png"
    status, out, err = run_cli(capsys, *TINY, "--workers", "1,2", "--markdown", "--details",
                               "--models", ONE_MACHINE_MODELS,
                               "--json", str(json_path), "--plot", str(png_path))
    assert status == 0, err
    assert err == ""
    # The answer first, at most 10 lines, then the table.
    assert out.startswith("**Answer for count_primes(0, 3000) in 8 items on this machine (")
    answer, _, rest = out.partition("\n\n")
    assert len(rest.partition("\n\n")[0].splitlines()) <= 9
    assert out.index("**Answer for") < out.index("| model | workers |")
    assert ("| model | workers | start-up s | passes | median s | spread | vs serial-python |"
            in out)
    assert "\nVerdict:\n- Fastest for count_primes here: " in out
    assert "PROJECTION, not a measurement" in out
    assert "```\nkind            python  workers  start-up s  per worker s  RSS MiB/worker" in out
    assert "\n- Per worker (start-up, resident memory): @" in out
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    document = json.loads(json_path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION == 3
    check_schema(document, SCHEMA)
    for key, keys in ENVIRONMENT.items():
        assert keys <= set(document["environment"][key]), key
    assert document["workload"]["answer"] == 430
    assert document["settings"]["workers"] == [1, 2]
    available = [m["name"] for m in document["models"] if m["available"]]
    assert {r["model"] for r in document["rows"]} == set(available)
    assert all(len(r["work_s"]) == len(r["repeats"]) == 2 for r in document["rows"])
    assert all(r["passes"] == [len(p["pass_s"]) for p in r["repeats"]] for r in document["rows"])
    assert document["settings"]["timing"] == {"min_time_s": 0.0, "max_outside_cores": None,
                                              "reruns": 2}
    assert all(m["reason"] for m in document["models"] if not m["available"])
    [interpreter] = document["environment"]["interpreters"]
    assert interpreter["default"] and interpreter["executable"] == sys.executable
    assert {r["interpreter"] for r in document["rows"]} == {interpreter["label"]}
    assert document["settings"]["pythons"] == []
    check_schema(document["footprints"], [FOOTPRINT])
    assert [f["kind"] for f in document["footprints"]] == ["thread", "subinterpreter",
                                                           "coprocess"]


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
