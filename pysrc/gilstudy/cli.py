# The `gilstudy` command (also `python -m gilstudy`). Each subcommand parses its options here
# and hands off to the module that does the work; bad options exit with status 2 and a
# one-line message, never a traceback.

import argparse
import sys

__all__ = ["main", "build_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _run_kernels(args: argparse.Namespace) -> int:
    from gilstudy import kernel_table

    return kernel_table.main(repeat=args.repeat, scale=args.scale, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gilstudy",
        description="Measure how CPU-bound Python uses all the cores: the same kernels in "
                    "every execution model, side by side.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    kernels = sub.add_parser(
        "kernels", help="time each kernel in Python and Cython on one thread",
        description="Time each kernel single-threaded in both implementations (interleaved, "
                    "median of --repeat runs) and print the Cython/Python speed ratio.")
    kernels.add_argument("--repeat", type=_positive_int, default=3,
                         help="runs of each implementation; the median is shown (default 3)")
    kernels.add_argument("--scale", type=_positive_float, default=1.0,
                         help="multiply the default amount of work (default 1.0)")
    kernels.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    kernels.set_defaults(run=_run_kernels)
    return parser


def _version() -> str:
    from gilstudy import __version__

    return f"gilstudy {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("gilstudy: interrupted", file=sys.stderr)
        return 130
