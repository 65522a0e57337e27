"""What every experiment shares: its Experiment entry (name, options, run, report), the
`gilstudy experiment NAME` command built from that entry, the result base class, and
running a workload under an interpreter: the self-contained script _workloads.py, sent
with `-c`, so any CPython from 2.7 on runs it with nothing installed.
"""

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar, TextIO

from gilstudy import machine, pythons
from gilstudy.cli import add_command, python_paths
from gilstudy.errors import GilstudyError, PythonExecutableFailed
from gilstudy.pythons import Python, Unusable

__all__ = ["TIMEOUT", "MIN_PYTHON", "Experiment", "Result", "Failure", "failure_rows",
           "failure_notes", "add_subcommand", "command", "interpreter", "run_workload",
           "check_json_path", "write_json"]

# Seconds a workload may run beyond what it was asked to do (its run_workload() deadline is
# this plus its own estimate); only reached when a child interpreter hangs.
TIMEOUT = 600.0

# The oldest Python the workload script is written for.
MIN_PYTHON = (2, 7)

_WORKLOADS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_workloads.py")
# The marker before the JSON line the script prints (_workloads.MARK; that module is the
# script's source, not imported here).
_MARK = "gilstudy-workload "


@dataclass(frozen=True)
class Experiment:
    """One experiment, as the command line sees it.

    ``name`` is its subcommand and the workload it runs in _workloads.py.
    ``add_options(parser)`` adds its own options, whose destinations are ``options``: the
    keyword arguments of ``run(**options, python=None, progress=None)``, which returns one
    Result. ``header(**options)`` is the line printed above ``report(results, failures)``,
    the table of the results of every interpreter, with a row for each Failure.
    """

    name: str
    help: str
    description: str
    add_options: Callable[[argparse.ArgumentParser], None]
    options: tuple[str, ...]
    run: Callable[..., "Result"]
    result_type: type
    header: Callable[..., str]
    report: Callable[[list, list], str]


@dataclass(frozen=True)
class Failure:
    """An interpreter that gave no result: ``python`` as it was named, and ``message``, one
    line saying why (it starts with the path)."""

    python: str
    message: str


def failure_rows(failures: list[Failure], columns: int) -> list[tuple[str, ...]]:
    """One table row of ``columns`` cells for each interpreter that gave no result: its
    path, and a pointer to its error (failure_notes())."""
    return [(failure.python, "no result: error below") + ("-",) * (columns - 2)
            for failure in failures]


def failure_notes(failures: list[Failure]) -> list[str]:
    """The line under a report that says why each failed interpreter gave no result."""
    return [f"error: {failure.message}" for failure in failures]


@dataclass(kw_only=True)
class Result:
    """Base of an experiment's result under one interpreter: the facts that label it, as
    the workload reported them there. ``interpreter`` is the short label ('3.13t'),
    ``version`` the full one ('3.13.1'); the GIL's state and how often it changes hands:
    ``switch_interval_s`` (sys.getswitchinterval(), 3.2 on) or ``check_interval`` (the
    bytecodes between checks, sys.getcheckinterval(), 2.x); ``environment`` is
    gilstudy.machine.describe(), its interpreter facts those of the child. A subclass, a
    dataclass with kw_only=True, adds its own fields; ``PARTS`` names the one holding its
    parts (a list) and their dataclass, so that the result goes to JSON and back."""

    PARTS: ClassVar[tuple[str, type]]

    interpreter: str
    version: str
    free_threaded_build: bool
    gil_enabled: bool
    executable: str
    switch_interval_s: float | None
    check_interval: int | None
    environment: dict

    @staticmethod
    def facts(reported: dict) -> dict:
        """The fields above, from the facts the workload script reported
        (_workloads.interpreter_facts())."""
        version = tuple(reported["version"])
        label = machine.interpreter_label(version, reported["free_threaded_build"])
        environment = machine.describe()
        environment.update(
            python=".".join(map(str, version)), implementation=reported["implementation"],
            interpreter=label, executable=reported["executable"],
            free_threaded_build=reported["free_threaded_build"],
            gil_enabled=reported["gil_enabled"], platform=reported["platform"])
        return {"interpreter": label, "version": environment["python"],
                "free_threaded_build": reported["free_threaded_build"],
                "gil_enabled": reported["gil_enabled"], "executable": reported["executable"],
                "switch_interval_s": reported["switch_interval_s"],
                "check_interval": reported["check_interval"], "environment": environment}

    @property
    def label(self) -> str:
        """'3.11.7, GIL on', '3.13.1t, GIL off': the interpreter and its GIL state, as
        rows are labelled."""
        build = "t" if self.free_threaded_build else ""
        return f"{self.version}{build}, GIL {'on' if self.gil_enabled else 'off'}"

    @property
    def gil_handover(self) -> str:
        """How often the GIL changes hands here: 'every 5 ms' (3.2 on), 'every 100
        bytecodes' (2.x), or 'no GIL'."""
        if not self.gil_enabled:
            return "no GIL"
        if self.switch_interval_s is not None:
            return f"every {self.switch_interval_s * 1e3:g} ms"
        return f"every {self.check_interval} bytecodes"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Result":
        field, part = cls.PARTS
        data = dict(data)
        data[field] = [part(**one) for one in data[field]]
        return cls(**data)


def interpreter(python: str | os.PathLike | Python | None) -> Python:
    """The interpreter to run a workload under: ``python`` when it is a Python already,
    else what gilstudy.pythons.survey() finds at that path or command (None: this one).
    Raises ValueError, one line starting with the path, when it cannot be used (missing,
    not a Python, silent, not CPython, older than MIN_PYTHON)."""
    if isinstance(python, Python):
        return python
    (found,) = pythons.survey([sys.executable if python is None else python],
                              minimum=MIN_PYTHON)
    if isinstance(found, Unusable):
        raise ValueError(found.reason)
    return found


def run_workload(name: str, python: Python, options: dict, timeout_s: float,
                 progress: Callable[[str], None] | None) -> tuple[dict, list]:
    """Run the workload ``name`` of _workloads.py with ``options`` under ``python`` and
    return what it reported: (the interpreter's facts, its results). Its progress lines
    go to ``progress`` once it is done (none are asked for when it is None).

    Raises PythonExecutableFailed (``subject``: the path) when the child cannot be started,
    exits with a failure (the message gives its status and its last line on stderr),
    prints no result line or a malformed one, or is still running after ``timeout_s``
    seconds (it is then killed).
    """
    with open(_WORKLOADS) as f:
        script = f.read()
    options = dict(options, progress=progress is not None)
    where = f"{python.path} running the {name} workload"
    with pythons.Child(python.path, ["-c", script, name, json.dumps(options)], where=where,
                       stdin=False) as child:
        output = child.output(timeout_s)
        if child.process.returncode != 0:
            raise child.failed("the child process failed")
        said = child.stderr_text()
    line = next((ln for ln in output.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise PythonExecutableFailed(f"{where}: printed no result line (it printed "
                                f"{output.strip()[:200]!r})", subject=python.path)
    try:
        answer = json.loads(line[len(_MARK):])
        facts, results = answer["facts"], answer["results"]
    except (ValueError, TypeError, KeyError) as exc:
        raise PythonExecutableFailed(f"{where}: printed a malformed result line ({exc!r})",
                                subject=python.path) from None
    if progress is not None:
        for said_line in said.splitlines():
            progress(said_line)
    return facts, results


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
    status 2 on a bad one, before anything runs), wait up to --idle-timeout for idle CPUs,
    find the --python interpreters (this one without it; 'all' for every one installed),
    run the experiment under each, in order of version, print the header, the CPU check and
    the report unless the JSON goes to stdout, and write the JSON. An interpreter that
    cannot be used or fails becomes an error row and one line on stderr, and the others
    still run. Returns the exit status: 0, or 1 when an interpreter gave no result or the
    JSON cannot be written."""
    prefix = f"gilstudy experiment {experiment.name}: error:"
    options = {name: getattr(args, name) for name in experiment.options}
    progress = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    try:
        check_json_path(args.json)
        pythons.probe_timeout()   # a bad GILSTUDY_PYTHON_TIMEOUT is bad input too
    except ValueError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    idle = machine.wait_for_idle_cpus(timeout_s=args.idle_timeout)
    named = "--python " if args.python else ""
    results, failures = [], []

    def fail(path: str, message: str) -> None:
        message = " ".join(message.split())
        print(f"{prefix} {named}{message}", file=sys.stderr, flush=True)
        failures.append(Failure(path, message))

    for found in pythons.survey(args.python or [sys.executable], minimum=MIN_PYTHON):
        if isinstance(found, Unusable):
            fail(found.path, found.reason)
            continue
        if progress:
            progress(f"{experiment.name} under {found.path} (Python {found.version})")
        try:
            results.append(experiment.run(**options, python=found, progress=progress))
        except GilstudyError as exc:
            fail(found.path, str(exc))
    if args.json != "-":
        print(experiment.header(**options))
        print(f"{idle.describe()} before the first interpreter ran; {machine.usable_cores()} "
              "usable cores")
        print(experiment.report(results, failures))
    if args.json is not None:
        try:
            write_json(args.json, {
                "experiment": experiment.name,
                "idle_check": asdict(idle),
                "results": [result.to_dict() for result in results],
                "errors": [asdict(failure) for failure in failures]})
        except OSError as exc:
            print(f"{prefix} cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 1 if failures else 0


def _idle_timeout(text: str) -> float:
    """argparse type of --idle-timeout: seconds from 0 to an hour."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 3600, got "
                                         f"{text!r}")
    return value


def add_subcommand(subparsers, experiment: Experiment) -> None:
    """Register ``experiment`` on the ``gilstudy experiment`` subparsers: its own options,
    then those every experiment has (--python, --json, --quiet)."""
    parser = add_command(subparsers, experiment.name, help=experiment.help,
                         description=experiment.description)
    experiment.add_options(parser)
    parser.add_argument("--python", type=python_paths, action="extend", default=[],
                        metavar="PATH[,PATH...]|all",
                        help="run under each of these CPython interpreters (2.7 or later; "
                             "nothing needs to be installed there) instead of this one; "
                             "'all' for every one on this machine")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the results as JSON to PATH ('-': stdout, no table)")
    parser.add_argument("--idle-timeout", type=_idle_timeout, default=30.0, metavar="SECONDS",
                        help="wait at most this long for idle CPUs first (default 30)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(run=lambda args: command(experiment, args))
