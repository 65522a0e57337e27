"""The `gilstudy` command (also `python -m gilstudy`). Each subcommand lives in the module
that does its work, as an ``add_subcommand(subparsers)`` function listed in SUBCOMMANDS;
this file assembles them and holds what they share: add_command() and the option types.
Bad options exit with status 2 and a one-line message, never a traceback.
"""

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "add_command", "one_line_errors", "positive_int",
           "positive_float", "python_paths", "SUBCOMMANDS"]

# Modules that each contribute one subcommand through add_subcommand(subparsers).
SUBCOMMANDS = [
    "gilstudy.kernel_table",
    "gilstudy.compare.cli",
    "gilstudy.compare.breakeven_cli",
    "gilstudy.experiments",
    "gilstudy.server",
]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def python_paths(text: str) -> list[str]:
    """argparse type of ``--python``: '/a/python,python3.13t' -> the paths or command names,
    located and probed later (gilstudy.pythons), after the cheaper checks."""
    paths = [part.strip() for part in text.split(",")]
    if not all(paths):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated interpreter paths, got {text!r}")
    return paths


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report a bad option as one line on stderr, ``PROG: error: MESSAGE``,
    and exit with status 2 (argparse would print the whole usage first); return it."""

    def error(message: str):
        print(f"{parser.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error
    return parser


def add_command(subparsers, name: str, help: str, description: str,
                **options) -> argparse.ArgumentParser:
    """Register subcommand ``name`` on ``subparsers`` (with its ``help`` in the list of
    commands and its ``description`` in its own help) and return its parser, which reports
    bad options in one line (one_line_errors)."""
    return one_line_errors(subparsers.add_parser(name, help=help, description=description,
                                                 **options))


def build_parser() -> argparse.ArgumentParser:
    """The ``gilstudy`` parser, with one subcommand per module in SUBCOMMANDS."""
    from gilstudy import __version__

    parser = one_line_errors(argparse.ArgumentParser(
        prog="gilstudy",
        description="Measure how CPU-bound Python uses all the cores: the same kernels in "
                    "every execution model, side by side."))
    parser.add_argument("--version", action="version", version=f"gilstudy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status. Each subcommand's parser
    sets ``run``, a function of the parsed namespace returning the status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("gilstudy: interrupted", file=sys.stderr)
        return 130
