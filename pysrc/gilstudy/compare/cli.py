# `gilstudy compare`: check every option before anything runs (a bad one, a bad --python
# too, is one line and exit status 2), run gilstudy.compare.run with a progress bar on
# stderr, print the report, write the JSON and the plot. A model or interpreter that fails,
# or a wrong answer (a CompareError), is one line and exit status 1.

import argparse
import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import TextIO

from gilstudy import kernels
from gilstudy.cli import add_command, positive_int, python_paths
from gilstudy.compare import registry
from gilstudy.compare.remote_session import checked
from gilstudy.compare.runner import check_workers, default_workers, run
from gilstudy.compare.workload import DEFAULT_ITEMS, default_size, make_workload, size_means
from gilstudy.errors import CompareError, UnknownKernelError

__all__ = ["add_subcommand", "main", "worker_counts", "ProgressBar"]

PROG = "gilstudy compare"


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def worker_counts(text: str) -> list[int]:
    """argparse type: '1,2,4' -> [1, 2, 4]."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers such as 1,2,4, got {text!r}") from None
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


def _error(message: str, status: int) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def _check(args) -> None:
    """Every check that needs no running, so a bad option fails before minutes of work."""
    make_workload(args.kernel, args.size, args.items)
    registry.select(args.models)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plot needs matplotlib: pip install 'gilstudy[compare]'")
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ValueError(f"{option}: directory {str(Path(path).parent)!r} does not exist")
    # Last, as it runs each interpreter once (about a second each).
    args.pythons = [checked(path, option="--python") for path in args.pythons]


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `gilstudy compare` for parsed ``args``, printing to ``out`` (default stdout);
    return the exit status."""
    out = sys.stdout if out is None else out
    try:
        _check(args)
    except (UnknownKernelError, ValueError, TypeError, OverflowError) as exc:
        return _error(exc, 2)
    bar = None if args.quiet or not sys.stderr.isatty() else ProgressBar(sys.stderr)
    try:
        result = run(kernel=args.kernel, size=args.size, items=args.items, workers=args.workers,
                     models=args.models, repeat=args.repeat, progress=bar,
                     idle_timeout_s=args.idle_timeout, pythons=args.pythons)
    except CompareError as exc:
        return _error(exc, 1)
    finally:
        if bar is not None:
            bar.finish()
    print(result.report(markdown=args.markdown), file=out)
    if args.json is not None:
        Path(args.json).write_text(result.to_json() + "\n")
        print(f"\nJSON written to {args.json}", file=out)
    if args.plot is not None:
        result.plot(args.plot)
        print(f"plot written to {args.plot}", file=out)
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy compare`` on the CLI's subparsers."""
    sizes = "; ".join(f"{k}: {size_means(k)} (default {default_size(k):_})"
                      for k in kernels.NAMES)
    parser = add_command(
        subparsers, "compare",
        help="run one workload in every execution model and compare speedups",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Run one kernel, split into work items, in every execution model at several "
            "worker counts; check that all models get serial-python's answer and report "
            "start-up, median time, speedups and parallel efficiency, a verdict, and "
            "scaling projections (Amdahl, USL) past this machine.", width=78),
        epilog="examples:\n"
               "  gilstudy compare\n"
               "  gilstudy compare --kernel mandelbrot --models '*-cython' --workers 1,2\n"
               "  gilstudy compare --kernel countdown --items 20000   # tiny items: "
               "per-item overhead\n"
               "  gilstudy compare --json results/compare.json --plot results/compare.png\n"
               "  gilstudy compare --models 'serial-*,threads-*' --python .venv-3.13t/bin/python\n"
               "                   # the same models under a free-threaded 3.13t too")
    parser.add_argument("--kernel", default="count_primes", choices=kernels.NAMES,
                        help="kernel to run (default count_primes)")
    parser.add_argument("--size", type=int, default=None,
                        help=f"amount of work; {sizes}. The defaults take about 0.7 s of pure "
                             "Python on one core")
    parser.add_argument("--items", type=positive_int, default=None,
                        help=f"work items the size is split into (default {DEFAULT_ITEMS})")
    parser.add_argument("--workers", type=worker_counts, default=None, metavar="N,N,...",
                        help="worker counts (default here: "
                             f"{','.join(map(str, default_workers()))}: powers of two up to the "
                             "usable cores, plus twice the cores)")
    parser.add_argument("--models", default=None, metavar="NAMES",
                        help="comma-separated model names or glob patterns such as '*-cython' "
                             f"(default: all of {', '.join(registry.names())}); serial-python "
                             "always runs, as the reference")
    parser.add_argument("--repeat", type=positive_int, default=5,
                        help="interleaved repeats; the median is reported (default 5)")
    parser.add_argument("--python", dest="pythons", type=python_paths, action="extend",
                        default=[], metavar="PATH[,PATH...]",
                        help="also run the models under these interpreters (each needs this "
                             "gilstudy installed), in child processes taking turns with this "
                             "one; rows are labelled model@3.11, model@3.13t, ... and "
                             "speedups stay relative to serial-python under this interpreter, "
                             "with a column against each interpreter's own serial-python")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write every timing and the environment as JSON")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="write speedup against workers as a PNG (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--idle-timeout", type=seconds, default=30.0, metavar="SECONDS",
                        help="wait at most this long for idle CPUs before timing (default 30)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=main)
