"""`gilstudy compare`: check every option before anything runs (a bad one, a bad --python
or output path too, is one line and exit status 2), run gilstudy.compare.run with a
progress bar on stderr, print the report, write the JSON and the plot. A model or
interpreter that fails, or a wrong answer (a CompareError), is one line and exit status 1.
The option types and checks that `gilstudy breakeven` shares live here too.
"""

import argparse
import importlib.util
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import TextIO

from gilstudy import kernels
from gilstudy.cli import add_command, positive_int, python_paths
from gilstudy.compare import document, limits, registry, report
from gilstudy.compare.plot import plot as write_plot
from gilstudy.compare.function import make_function_workload
from gilstudy.compare.measure import DEFAULT_MAX_OUTSIDE_CORES, DEFAULT_MIN_TIME_S, DEFAULT_RERUNS
from gilstudy.compare.remote_session import checked
from gilstudy.compare.runner import check_workers, default_workers, run, scaling_workers
from gilstudy.compare.style import plot_path
from gilstudy.compare.workload import DEFAULT_ITEMS, default_size, make_workload, size_means
from gilstudy.errors import CompareError, UnknownKernelError

__all__ = ["add_subcommand", "main", "worker_counts", "ProgressBar", "seconds", "cores",
           "count", "output_path", "add_timing_options", "add_output_options",
           "add_function_options", "timing_arguments", "fail", "run_command", "comma_list"]

PROG = "gilstudy compare"


def _number_type(convert, accept, rule: str, what: str):
    """An argparse type: ``convert(text)``, refused unless ``accept(value)`` ("must be
    RULE, got TEXT"), or unless it converts ("must be WHAT, got 'TEXT'")."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


# argparse types: a finite number of seconds >= 0; a number of cores > 0 or inf; an int >= 0.
seconds = _number_type(float, lambda v: 0 <= v < math.inf, "a finite number >= 0",
                       "a number of seconds")
cores = _number_type(float, lambda v: v > 0, "> 0 (inf: never run a repeat again)",
                     "a number of cores")
count = _number_type(int, lambda v: v >= 0, ">= 0", "an integer")


def output_path(option: str, path: str | None, plot: bool = False) -> Path | None:
    """The file ``option`` will write, checked before any work starts: ValueError unless
    its directory exists and is writable and the path is not a directory. A plot's suffix
    must be one matplotlib writes (none means .png, and the path returned says so)."""
    if path is None:
        return None
    if Path(path).is_dir():
        raise ValueError(f"{option}: {str(path)!r} is a directory; name a file to write")
    if plot:
        if importlib.util.find_spec("matplotlib") is None:
            raise ValueError(f"{option} needs matplotlib: pip install 'gilstudy[compare]'")
        written = plot_path(path, option)
    else:
        written = Path(path)
    if written.is_dir():
        raise ValueError(f"{option}: {str(written)!r} is a directory; name a file to write")
    if not written.resolve().parent.is_dir():
        raise ValueError(f"{option}: directory {str(written.parent)!r} does not exist")
    if not os.access(written.resolve().parent, os.W_OK) or (
            written.exists() and not os.access(written, os.W_OK)):
        raise ValueError(f"{option}: cannot write {str(written)!r}: permission denied")
    return written


def fail(prog: str, message: object, status: int) -> int:
    """Print ``PROG: error: MESSAGE`` on one line on stderr; return ``status``."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def comma_list(text: str, convert, what: str) -> list:
    """``text`` split at commas, each part converted; ArgumentTypeError "must be WHAT, got
    'TEXT'" when one does not convert."""
    try:
        return [convert(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def worker_counts(text: str) -> list[int]:
    """argparse type: '1,2,4' -> [1, 2, 4]."""
    counts = comma_list(text, int, "comma-separated integers such as 1,2,4")
    try:
        return check_workers(counts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("workers: ")) from None


class ProgressBar:
    """A one-line progress bar redrawn on ``stream`` (a terminal): ``[#####.....] 12/40
    what``. ``finish()`` clears the line."""

    WIDTH = 30

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._last_len = 0

    def __call__(self, done: int, total: int, what: str) -> None:
        filled = self.WIDTH * done // max(total, 1)
        text = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} {what}"
        self.stream.write("\r" + text.ljust(self._last_len))
        self.stream.flush()
        self._last_len = len(text)

    def finish(self) -> None:
        if self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self.stream.flush()
            self._last_len = 0


def _workload(args):
    """The workload the options name: a kernel, or --function over --inputs."""
    if args.function is None:
        for option, value in (("--inputs", args.inputs), ("--nogil", args.nogil)):
            if value is not None:
                raise ValueError(f"{option} goes with --function MODULE:NAME, which is missing")
        return make_workload(args.kernel or "count_primes", args.size, args.items)
    given = [option for option, value in (("--kernel", args.kernel), ("--size", args.size),
                                          ("--items", args.items)) if value is not None]
    if given:
        raise ValueError(f"--function cannot go with {', '.join(given)}: its inputs are the "
                         "items")
    if args.inputs is None:
        raise ValueError("--function needs --inputs MODULE:NAME, an iterable of argument "
                         "tuples or a function returning one")
    return make_function_workload(args.function, args.inputs, args.nogil, prefix="--")


def _check(args) -> None:
    """Every check that needs no running, so a bad option fails before minutes of work."""
    args.workload = _workload(args)
    registry.select(args.models)
    args.json = output_path("--json", args.json)
    args.plot = output_path("--plot", args.plot, plot=True)
    # Last, as it runs each interpreter once (about a second each).
    args.pythons = [checked(path, option="--python") for path in args.pythons]
    if args.pythons:
        args.workload.spec()


def run_command(prog: str, args: argparse.Namespace, check, measure, out: TextIO | None,
                show=None) -> int:
    """What `gilstudy compare` and `gilstudy breakeven` do with parsed ``args``: ``check``
    them (a bad option: one line, status 2), ``measure(args, progress)`` with a progress bar
    on a terminal's stderr (a CompareError: one line, status 1), print the result's report
    to ``out`` (default stdout) first, then write its JSON and plot where asked; return the
    status. ``show(result, args)`` gives the report, the JSON text and a function writing
    the plot to a path (default: the result's own report(), to_json() and plot())."""
    out = sys.stdout if out is None else out
    try:
        check(args)
        limits.check(args)
    except (UnknownKernelError, ValueError, TypeError, OverflowError) as exc:
        return fail(prog, exc, 2)
    except Exception as exc:  # the user's --function or --inputs raised while checked
        return fail(prog, f"checking the options raised {type(exc).__name__}: {exc}", 2)
    bar = None if args.quiet or not sys.stderr.isatty() else ProgressBar(sys.stderr)
    try:
        result = measure(args, bar)
    except CompareError as exc:
        return fail(prog, exc, 1)
    except Exception as exc:  # the user's function, or a sweep it made impossible
        return fail(prog, limits.running_failure(prog, args, exc), 1)
    finally:
        if bar is not None:
            bar.finish()
    if show is None:
        text, as_json, draw = (result.report(markdown=args.markdown), result.to_json,
                               result.plot)
    else:
        text, as_json, draw = show(result, args)
    print(text, file=out)
    return limits.write_outputs(prog, args, as_json, draw, out, fail)


def _show(result, args):
    """The compare result's report (with --details or not), JSON and plot writer."""
    return (report.report(result, markdown=args.markdown, details=args.details),
            lambda: document.to_json(result), lambda path: write_plot(result, path))


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `gilstudy compare` for parsed ``args``, printing to ``out`` (default stdout);
    return the exit status."""
    return run_command(PROG, args, _check, lambda args, progress: run(
        workload=args.workload, workers=args.workers, models=args.models, repeat=args.repeat,
        progress=progress, idle_timeout_s=args.idle_timeout, pythons=args.pythons,
        footprint=args.footprint, **timing_arguments(args)), out, _show)


def timing_arguments(args) -> dict:
    """The keyword arguments of compare.run() that add_timing_options() parsed."""
    return {"min_time_s": args.min_time, "max_outside_cores": args.max_outside_load,
            "reruns": args.reruns}


def add_timing_options(parser, min_time: float = DEFAULT_MIN_TIME_S) -> None:
    """--min-time, --max-outside-load, --reruns (compare.measure.Timing)."""
    parser.add_argument("--min-time", type=seconds, default=min_time, metavar="SECONDS",
                        help="each timed repeat runs the whole workload again on the same "
                             "workers until it lasts this long; the time per pass is reported "
                             f"(default {min_time})")
    parser.add_argument("--max-outside-load", type=cores, default=DEFAULT_MAX_OUTSIDE_CORES,
                        metavar="CORES",
                        help="a repeat during which other processes used more than this many "
                             f"cores is run again (default {DEFAULT_MAX_OUTSIDE_CORES}; inf: "
                             "never)")
    parser.add_argument("--force", action="store_true",
                        help="run even what looks absurd: more than "
                             f"{limits.MAX_REPEAT} repeats, repeats of over "
                             f"{limits.MAX_MIN_TIME_S:g} s, more than {limits.max_workers()} "
                             "workers, or a run of more than a day")
    parser.add_argument("--reruns", type=count, default=DEFAULT_RERUNS, metavar="N",
                        help="run a disturbed repeat again at most N times, then keep its "
                             f"least disturbed try (default {DEFAULT_RERUNS})")


def add_output_options(parser, what: str) -> None:
    """Add --json, --plot (of ``what``), --markdown, --idle-timeout and --quiet."""
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write every timing and the environment as JSON")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help=f"write {what} as a PNG (or .svg, .pdf ...; needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--idle-timeout", type=seconds, default=30.0, metavar="SECONDS",
                        help="wait at most this long for idle CPUs before timing (default 30)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def add_function_options(parser, inputs: bool = True) -> None:
    """Add --function and --nogil to ``parser``, and --inputs unless ``inputs`` is false."""
    parser.add_argument("--function", default=None, metavar="MODULE:NAME",
                        help="time your own function instead of a kernel (the current "
                             "directory is searched first)")
    if inputs:
        parser.add_argument("--inputs", default=None, metavar="MODULE:NAME",
                            help="with --function: a module-level iterable of argument tuples, "
                                 "or a function returning one; each tuple is one item")
    parser.add_argument("--nogil", default=None, metavar="MODULE:NAME",
                        help="with --function: the same function implemented so that it "
                             "releases the GIL (Cython, a numpy call, hashlib on large "
                             "buffers); the models named *-cython run it, shown as *-nogil")


def _slow_models() -> list[str]:
    """The models outside the quick set."""
    return [m.name for m in registry.all_models() if not m.quick]


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy compare`` on the CLI's subparsers."""
    sizes = "; ".join(f"{k}: {size_means(k)} (default {default_size(k):_})"
                      for k in kernels.NAMES)
    parser = add_command(
        subparsers, "compare",
        help="run one workload in every execution model and compare speedups",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run one kernel split into work items, or your own function over its inputs, "
            "in several execution models at several worker counts; check that all models get "
            "serial-python's answer. The report opens with the answer: which model to use "
            "here, at how many workers, how much faster than serial-python and how sure "
            "(ties are said to tie), whether threads help pure Python, the smallest item "
            "that pays off and what to try next. Then the table: start-up, time per pass "
            "(each repeat lasting at least --min-time, re-run when other processes "
            "disturbed it), speedups and parallel efficiency, and a verdict. Without "
            "options it runs the quick set of models at 1 worker and at the usable cores "
            "in about a minute; --models all runs every model.", width=78),
        epilog="examples:\n"
               "  gilstudy compare                 # the quick set, about a minute\n"
               "  gilstudy compare --models all    # every model, about 5 minutes on 2 cores\n"
               "  gilstudy compare --kernel mandelbrot --models '*-cython' --workers 1,2\n"
               "  gilstudy compare --kernel countdown --items 20000   # tiny items: "
               "per-item overhead\n"
               "  gilstudy compare --json results/compare.json --plot results/compare.png\n"
               "  gilstudy compare --function mymodule:f --inputs mymodule:INPUTS "
               "--nogil mymodule:f_fast\n"
               "  gilstudy compare --models 'serial-*,threads-*' --python .venv-3.13t/bin/python\n"
               "                   # the same models under a free-threaded 3.13t too")
    parser.add_argument("--kernel", default=None, choices=kernels.NAMES,
                        help="kernel to run (default count_primes)")
    parser.add_argument("--size", type=int, default=None,
                        help=f"amount of work; {sizes}. The defaults take about 0.7 s of pure "
                             "Python on one core")
    parser.add_argument("--items", type=positive_int, default=None,
                        help=f"work items the size is split into (default {DEFAULT_ITEMS})")
    add_function_options(parser)
    parser.add_argument("--workers", type=worker_counts, default=None, metavar="N,N,...",
                        help="worker counts (default here: "
                             f"{','.join(map(str, default_workers()))}: 1 and the usable cores; "
                             "for a scaling curve try "
                             f"{','.join(map(str, scaling_workers()))})")
    parser.add_argument("--models", default=None, metavar="NAMES",
                        help="comma-separated model names or glob patterns such as '*-cython', "
                             "or 'all' (default: the quick set, "
                             f"{', '.join(m.name for m in registry.quick_models())}; about a "
                             "minute on an idle 2-core machine, 2 to 3 when loaded). 'all' "
                             f"adds the rest ({', '.join(_slow_models())}), "
                             "about 5 minutes on 2 cores. serial-python always runs, as the "
                             "reference")
    parser.add_argument("--repeat", type=positive_int, default=5,
                        help="interleaved repeats; the median is reported (default 5)")
    add_timing_options(parser)
    parser.add_argument("--python", dest="pythons", type=python_paths, action="extend",
                        default=[], metavar="PATH[,PATH...]",
                        help="also run the models under these interpreters (each needs this "
                             "gilstudy installed), in child processes taking turns with this "
                             "one; rows are labelled model@3.11, model@3.13t, ... and "
                             "speedups stay relative to serial-python under this interpreter, "
                             "with a column against each interpreter's own serial-python; "
                             "one that does not answer within GILSTUDY_PYTHON_TIMEOUT seconds "
                             "(default 120) is stopped")
    parser.add_argument("--no-footprint", dest="footprint", action="store_false",
                        help="leave out the table of start-up time and memory per worker "
                             "(thread, subinterpreter, coprocess under each interpreter), "
                             "which takes a few seconds after the timing")
    add_output_options(parser, "speedup against workers")
    parser.add_argument("--details", action="store_true",
                        help="also print the start-up and memory per worker and what the "
                             "figures bound past this machine (the JSON always has them)")
    parser.set_defaults(run=main)
