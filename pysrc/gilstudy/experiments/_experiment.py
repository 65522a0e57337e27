# What every experiment shares: its Experiment entry (name, options, run, report), the
# `gilstudy experiment NAME` command and `python -m` entry built from that entry, the result
# base class, and running it under another interpreter (gilstudy.pythons), its JSON results
# read back over stdout.

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, ClassVar, TextIO

from gilstudy import machine, pythons
from gilstudy.cli import add_command, one_line_errors, python_paths
from gilstudy.errors import GilstudyError, InterpreterFailed
from gilstudy.pythons import Python

__all__ = ["TIMEOUT", "Experiment", "Result", "add_subcommand", "module_main", "command",
           "run_elsewhere", "check_json_path", "write_json"]

# Only reached when an experiment in another interpreter hangs; a normal run takes seconds.
TIMEOUT = 600.0


@dataclass(frozen=True)
class Experiment:
    """One experiment, as the command line and other interpreters see it.

    ``name`` is its subcommand and its module's name (gilstudy.experiments.NAME).
    ``add_options(parser)`` adds its own options, whose destinations are ``options``: the
    keyword arguments of ``run(**options, python=None, progress=None)``, which returns one
    ``result_type`` (a Result). ``header(**options)`` is the line printed above
    ``report(results)``, the table of the results of every interpreter.
    """

    name: str
    help: str
    description: str
    add_options: Callable[[argparse.ArgumentParser], None]
    options: tuple[str, ...]
    run: Callable[..., "Result"]
    result_type: type
    header: Callable[..., str]
    report: Callable[[list], str]

    @property
    def module(self) -> str:
        return f"gilstudy.experiments.{self.name}"


@dataclass(kw_only=True)
class Result:
    """Base of an experiment's result under one interpreter: the facts that label it,
    which default to this interpreter's (its label such as '3.13t', its GIL state, its
    executable, its switch interval, gilstudy.machine.describe()). A subclass, a dataclass
    with kw_only=True, adds its own fields; ``PARTS`` names the one holding its parts (a
    list) and their dataclass, so that the result goes to JSON and back."""

    PARTS: ClassVar[tuple[str, type]]

    interpreter: str = field(default_factory=machine.interpreter_label)
    gil_enabled: bool = field(default_factory=machine.gil_enabled)
    executable: str = field(default_factory=lambda: sys.executable)
    switch_interval_s: float = field(default_factory=sys.getswitchinterval)
    environment: dict = field(default_factory=machine.describe)

    @property
    def label(self) -> str:
        """'3.11, GIL on': the interpreter and its GIL state, as rows are labelled."""
        return f"{self.interpreter}, GIL {'on' if self.gil_enabled else 'off'}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        field, part = cls.PARTS
        data = dict(data)
        data[field] = [part(**one) for one in data[field]]
        return cls(**data)


def run_elsewhere(experiment: Experiment, python: str | os.PathLike | Python, options: dict,
                  progress: Callable[[str], None] | None) -> Result:
    """Run ``experiment`` with ``options`` under the interpreter ``python`` (a path, a
    command on PATH, or a Python that gilstudy.pythons.probe() returned), as ``PYTHON -m
    MODULE --json - --OPTION VALUE ...``, and return its result, rebuilt from the JSON
    document the child prints. Its stderr (progress lines, or none when ``progress`` is
    None) is passed on once it is done.

    Raises ValueError when ``python`` cannot run the experiment (as probe() says), and
    InterpreterFailed (``subject``: its path) when the child cannot be started, exits with
    a failure (the message gives its status and its last line on stderr), prints something
    other than the experiment's document, or runs past TIMEOUT seconds (it is killed).
    """
    if not isinstance(python, Python):
        python = pythons.probe(python, module=experiment.module)
    args = ["-m", experiment.module, "--json", "-"]
    for name, value in options.items():
        args += [f"--{name}", repr(value)]
    if progress is None:
        args.append("--quiet")
    where = f"{python.path} -m {experiment.module}"
    with pythons.Child(python.path, args, where=where, stdin=False) as child:
        output = child.output(TIMEOUT)
        if child.process.returncode != 0:
            raise child.failed("the child process failed")
        sys.stderr.write(child.stderr_text())
    try:
        document = json.loads(output)
    except ValueError as exc:
        raise InterpreterFailed(f"{where}: printed no JSON document ({exc})",
                                subject=python.path) from None
    if (not isinstance(document, dict) or document.get("experiment") != experiment.name
            or len(document.get("results", ())) != 1):
        raise InterpreterFailed(f"{where}: printed a JSON document that is not one result of "
                                f"the {experiment.name} experiment", subject=python.path)
    return experiment.result_type.from_dict(document["results"][0])


def check_json_path(path: str | None) -> None:
    """Raise ValueError when ``--json PATH`` could not be written (its directory is missing
    or read-only), so a bad path fails before the experiment runs rather than after."""
    if path is None or path == "-":
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"--json {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--json {path}: is a directory")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"--json {path}: directory {directory} is not writable")


def write_json(path: str, document: dict, stdout: TextIO | None = None) -> None:
    """Write ``document`` to ``path``, or to stdout when ``path`` is '-'."""
    text = json.dumps(document, indent=2) + "\n"
    if path == "-":
        (stdout or sys.stdout).write(text)
        return
    with open(path, "w") as f:
        f.write(text)


def command(experiment: Experiment, args: argparse.Namespace) -> int:
    """What `gilstudy experiment NAME` does, for every experiment: check the options (exit
    status 2 on a bad one: each --python is probed first), run the experiment under each
    --python interpreter (or this one), print the header and the report unless the JSON
    goes to stdout, write the JSON; return the exit status (1 when a run fails, with a
    one-line message, or when the JSON cannot be written)."""
    prefix = f"gilstudy experiment {experiment.name}: error:"
    options = {name: getattr(args, name) for name in experiment.options}
    progress = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    try:
        check_json_path(args.json)
        others = []
        for path in args.python:
            try:
                others.append(pythons.probe(path, module=experiment.module))
            except ValueError as exc:
                raise ValueError(f"--python {exc}") from None
    except ValueError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    try:
        results = ([experiment.run(**options, python=python, progress=progress)
                    for python in others] if others
                   else [experiment.run(**options, progress=progress)])
    except (GilstudyError, RuntimeError) as exc:
        print(f"{prefix} {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if args.json != "-":
        print(experiment.header(**options))
        print(experiment.report(results))
    if args.json is not None:
        try:
            write_json(args.json, {"experiment": experiment.name,
                                   "results": [result.to_dict() for result in results]})
        except OSError as exc:
            print(f"{prefix} cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


def _add_arguments(parser: argparse.ArgumentParser, experiment: Experiment) -> None:
    """The experiment's own options, then those every experiment has: --python, --json and
    --quiet."""
    experiment.add_options(parser)
    parser.add_argument("--python", type=python_paths, action="extend", default=[],
                        metavar="PATH[,PATH...]",
                        help="run under each of these interpreters (each needs gilstudy "
                             "installed) instead of this one")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the results as JSON to PATH ('-': stdout, no table)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=lambda args: command(experiment, args))


def add_subcommand(subparsers, experiment: Experiment) -> None:
    """Register ``experiment`` on the ``gilstudy experiment`` subparsers."""
    _add_arguments(add_command(subparsers, experiment.name, help=experiment.help,
                               description=experiment.description), experiment)


def module_main(experiment: Experiment, argv: list[str] | None = None) -> int:
    """``python -m gilstudy.experiments.NAME``: the experiment's options, parsed and run;
    how --python runs an experiment in another interpreter. Returns the exit status."""
    parser = one_line_errors(argparse.ArgumentParser(prog=f"python -m {experiment.module}"))
    _add_arguments(parser, experiment)
    return command(experiment, parser.parse_args(argv))
