# Running an experiment under another Python interpreter and reading its results back: the
# experiment module runs there as ``python -m <module> --json -``, and its JSON document comes
# back over stdout. Also the option parsing and table layout the experiments share.

import argparse
import json
import os
import shutil
import subprocess
import sys
from typing import Callable, TextIO

__all__ = ["TIMEOUT", "interpreter_paths", "check_interpreter", "check_json_path", "run_module",
           "write_json", "format_table"]

# Only reached when an experiment in another interpreter hangs; a normal run takes seconds.
TIMEOUT = 600.0


def interpreter_paths(text: str) -> list[str]:
    """argparse type of ``--python``: comma-separated interpreter paths (or names on PATH),
    each resolved to an executable file."""
    paths = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise argparse.ArgumentTypeError(f"empty interpreter path in {text!r}")
        found = shutil.which(item) if os.sep not in item else item
        if found is None or not os.path.isfile(found):
            raise argparse.ArgumentTypeError(f"no such interpreter: {item}")
        if not os.access(found, os.X_OK):
            raise argparse.ArgumentTypeError(f"interpreter is not executable: {item}")
        paths.append(found)
    return paths


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_interpreter(python: str, module: str) -> None:
    """Raise ValueError unless ``python`` runs and can import ``module`` (gilstudy must be
    installed in it; ``make ftpython`` builds a free-threaded one that has it)."""
    # The probe prints a marker, so a program that exits 0 without being Python fails it.
    probe = f"import {module}; print('gilstudy-import-ok')"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                              timeout=TIMEOUT)
    except OSError as exc:
        raise ValueError(f"--python {python}: cannot run it ({exc.strerror or exc})") from None
    except subprocess.TimeoutExpired:
        raise ValueError(f"--python {python}: importing {module} took over {TIMEOUT:.0f} s") from None
    if done.returncode != 0 or done.stdout.strip() != "gilstudy-import-ok":
        raise ValueError(f"--python {python}: cannot import {module} ({_last_line(done.stderr)}); "
                         "install gilstudy into that interpreter (make ftpython builds "
                         ".venv-3.13t with it)")


def run_module(python: str, module: str, args: list[str]) -> dict:
    """Run ``python -m module --json - *args`` and return the JSON document it printed.

    Raises RuntimeError, carrying the last line of the child's stderr, when the child exits
    non-zero, prints something that is not JSON, or runs past TIMEOUT seconds. The child's
    stderr (progress lines) is otherwise passed through.
    """
    command = [python, "-m", module, "--json", "-", *args]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{python} -m {module} ran past {TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise RuntimeError(f"{python}: cannot run it ({exc.strerror or exc})") from None
    if done.returncode != 0:
        raise RuntimeError(f"{python} -m {module} exited with code {done.returncode}: "
                           f"{_last_line(done.stderr)}")
    if done.stderr:
        sys.stderr.write(done.stderr)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{python} -m {module} printed no JSON document ({exc})") from None


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


def format_table(rows: list[tuple[str, ...]], right: set[int] = frozenset()) -> str:
    """Rows of cells as aligned columns under a rule; the first row is the header. Columns
    whose index is in ``right`` are right-aligned (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells):
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths)]
                     + [line(row) for row in rows[1:]])


def command(name: str, module: str, pythons: list[str] | None, json_path: str | None,
            quiet: bool, run_one: Callable, header: str,
            format_report: Callable[[list], str], document: Callable[[list], dict]) -> int:
    """What `gilstudy experiment NAME` does, for every experiment: check the options (exit 2
    on a bad one), call ``run_one(python=..., progress=...)`` under each interpreter (or
    this one), print ``header`` and the report unless the JSON goes to stdout, write the
    JSON; return the exit status (1 when a run or the JSON fails)."""
    prefix = f"gilstudy experiment {name}: error:"
    progress = None if quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    try:
        check_json_path(json_path)
        for python in pythons or ():
            check_interpreter(python, module)
    except ValueError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 2
    try:
        results = ([run_one(python=p, progress=progress) for p in pythons]
                   if pythons else [run_one(progress=progress)])
    except RuntimeError as exc:
        print(f"{prefix} {exc}", file=sys.stderr)
        return 1
    if json_path != "-":
        print(header)
        print(format_report(results))
    if json_path is not None:
        try:
            write_json(json_path, document(results))
        except OSError as exc:
            print(f"{prefix} cannot write {json_path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every experiment has: --python, --json and --quiet."""
    parser.add_argument("--python", type=interpreter_paths, default=None,
                        metavar="PATH[,PATH...]",
                        help="run under each of these interpreters (each needs gilstudy "
                             "installed) instead of this one")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the results as JSON to PATH ('-': stdout, no table)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def module_main(module: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> int:
    """``python -m MODULE``: the experiment's own options, parsed and run; how --python runs
    an experiment in another interpreter. Returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    add_arguments(parser)
    args = parser.parse_args()
    return args.run(args)
