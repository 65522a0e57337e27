"""`gilstudy breakeven` on the command line: every option checked before anything runs (one
line and exit status 2), then the sweep of gilstudy.compare.breakeven with a progress bar,
its table, and the JSON and the plot if asked for. A model that fails is exit status 1.
"""

import argparse
import textwrap
from typing import TextIO

from gilstudy import kernels
from gilstudy.cli import add_command, positive_int
from gilstudy.compare import breakeven, registry
from gilstudy.compare.cli import (add_output_options, add_timing_options, comma_list,
                                  output_path, run_command, timing_arguments, worker_counts)
from gilstudy.compare.function import make_function_workload
from gilstudy.compare.projection import seconds_text

__all__ = ["add_subcommand", "main", "item_durations"]

PROG = "gilstudy breakeven"


def item_durations(text: str) -> list[float]:
    """argparse type: '1e-5,1e-3,0.1' -> seconds of work per item, each > 0 and finite."""
    values = comma_list(text, float, "comma-separated seconds such as 1e-5,1e-3,0.1")
    bad = [v for v in values if not 0 < v <= 10]
    if bad:
        raise argparse.ArgumentTypeError(f"each duration must be > 0 and at most 10 s, "
                                         f"got {bad[0]:g}")
    return sorted(set(values))


def _check(args) -> None:
    """Every check that needs no running."""
    if args.function is None and args.nogil is not None:
        raise ValueError("--nogil goes with --function MODULE:NAME, which is missing")
    if args.function is not None:
        if args.kernel is not None:
            raise ValueError("--function cannot go with --kernel")
        make_function_workload(args.function, [(1,)], args.nogil, prefix="--")
    registry.select(args.models)
    args.json = output_path("--json", args.json)
    args.plot = output_path("--plot", args.plot, plot=True)


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `gilstudy breakeven` for parsed ``args``; return the exit status."""
    return run_command(PROG, args, _check, lambda args, progress: breakeven.run(
        args.kernel, function=args.function, nogil=args.nogil, workers=args.workers,
        models=args.models, targets_s=args.durations, repeat=args.repeat,
        idle_timeout_s=args.idle_timeout, progress=progress, **timing_arguments(args)), out)


def _quick_dispatchers() -> list[str]:
    return [m.name for m in registry.quick_models() if m.max_workers != 1 and m.dispatches_items]


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy breakeven`` on the CLI's subparsers."""
    parser = add_command(
        subparsers, "breakeven",
        help="how much work one item needs before each model beats the serial run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "For each execution model, sweep the work per item from about 10 us to 100 ms "
            "(a kernel, or your own function of one size argument). The report opens with "
            "the answer: for each model, the smallest item duration from which it is "
            f"{breakeven.GOAL:g}x as fast as the serial run, at 2 workers and at all usable "
            "cores; then its speedup over the serial run at each duration and its dispatch "
            "cost per item.", width=78),
        epilog="examples:\n"
               "  gilstudy breakeven\n"
               "  gilstudy breakeven --models 'threads-*,coprocess-*' --durations 1e-4,1e-3,1e-2\n"
               "  gilstudy breakeven --function mymodule:work --nogil mymodule:work_fast\n"
               "                     # work(size): time roughly proportional to size")
    parser.add_argument("--kernel", default=None, choices=kernels.NAMES,
                        help="kernel whose items are swept (default countdown)")
    parser.add_argument("--function", default=None, metavar="MODULE:NAME",
                        help="sweep your own function instead, called with one size argument "
                             "(an int >= 1, its work roughly proportional to it)")
    parser.add_argument("--nogil", default=None, metavar="MODULE:NAME",
                        help="with --function: its GIL-releasing twin, run by the *-cython "
                             "models (shown as *-nogil)")
    parser.add_argument("--durations", type=item_durations, default=list(breakeven.TARGETS_S),
                        metavar="S,S,...",
                        help="serial seconds of work per item to sweep (default "
                             f"{', '.join(seconds_text(t) for t in breakeven.TARGETS_S)})")
    parser.add_argument("--workers", type=worker_counts, default=None, metavar="N,N,...",
                        help="worker counts (default: 2 and the usable cores, here "
                             f"{','.join(map(str, breakeven.default_workers()))})")
    parser.add_argument("--models", default=None, metavar="NAMES",
                        help="model names or glob patterns, or 'all' (default: the quick set's "
                             "models that hand items to workers, "
                             f"{', '.join(_quick_dispatchers())}; about 2 minutes on an idle "
                             "2-core machine); the serial models always run")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="interleaved repeats per point; the median is used (default 3)")
    add_timing_options(parser, min_time=0.2)
    add_output_options(parser, "efficiency against item duration")
    parser.set_defaults(run=main)
