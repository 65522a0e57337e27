"""Other Python interpreters on this machine, for every command that runs under them
(`gilstudy compare --python`, the experiments' --python): locate() turns a path or a
command name into an executable, probe() asks it what it is, installed() and survey() find
and sort them all, and Child runs a command under one, quoting its last words on failure.
"""

import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

from gilstudy import machine
from gilstudy.errors import PythonExecutableFailed

__all__ = ["Python", "Unusable", "locate", "probe", "installed", "survey", "Child", "ALL",
           "GILSTUDY_MIN_PYTHON", "PROBE_TIMEOUT_S", "EXIT_TIMEOUT_S", "PROBE_TIMEOUT_VARIABLE",
           "probe_timeout"]

# The Python versions gilstudy supports (pyproject's requires-python).
GILSTUDY_MIN_PYTHON = (3, 11)

# Seconds an interpreter may take to start, import what the probe asks for and answer (a
# cold start on a loaded machine takes a second or two; this is only reached if one hangs),
# and to exit once told to.
PROBE_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0

# The environment variable that sets another probe timeout, in seconds (see probe_timeout).
PROBE_TIMEOUT_VARIABLE = "GILSTUDY_PYTHON_TIMEOUT"


def probe_timeout() -> float:
    """The seconds an interpreter given with --python may take to answer: the environment
    variable GILSTUDY_PYTHON_TIMEOUT when set, else PROBE_TIMEOUT_S (120). ValueError
    naming the variable when it is not a positive, finite number."""
    text = os.environ.get(PROBE_TIMEOUT_VARIABLE)
    if text is None or not text.strip():
        return PROBE_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"{PROBE_TIMEOUT_VARIABLE} must be a positive number of seconds, "
                         f"got {text!r}")
    return value

# The name that stands for every interpreter installed() finds, in survey() and --python.
ALL = "all"

# Executable names of CPython interpreters: python, python3, python2.7, python3.13t (and not
# python3-config, python3.11-dbg or pythonw).
_EXECUTABLE_NAME = re.compile(r"python(\d+(\.\d+)?t?)?")

# probe() runs this with `PATH -c SCRIPT MODULE`. It must run under any Python from 2.7 on
# with nothing installed, so: no f-strings, nothing outside the standard library, and every
# failure ends up in the answer, one JSON line after the marker.
_PROBE_MARK = "gilstudy-probe "
_PROBE_SCRIPT = """\
import json, platform, sys, sysconfig
answer = {"version": list(sys.version_info[:3]), "executable": sys.executable,
          "implementation": platform.python_implementation(),
          "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED"))}
try:
    import gilstudy
    answer["gilstudy"] = getattr(gilstudy, "__version__", "unknown")
    if sys.argv[1]:
        import importlib
        module = importlib.import_module(sys.argv[1])
        answer["identity"] = getattr(module, "identify", dict)()
except Exception as exc:
    answer["missing"] = getattr(exc, "name", None)
    answer["error"] = "%s: %s" % (type(exc).__name__, exc)
answer["gil_enabled"] = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
sys.stdout.write("gilstudy-probe " + json.dumps(answer) + "\\n")
"""


@dataclass(frozen=True)
class Python:
    """An interpreter as probe() found it: ``path`` as given (or as found on PATH),
    ``executable`` (its own sys.executable), ``version`` ('3.13.1'), ``label`` ('3.11';
    '3.13t' for a free-threaded build, as gilstudy.machine.interpreter_label() names it),
    whether its GIL was enabled once the probe's imports were done, and the version of the
    gilstudy installed there (None when it has none that imports). ``identity`` is what
    the module probe() was asked to import said of itself (its ``identify()``), else {}.
    ``implementation`` is 'CPython', 'PyPy'...; ``free_threaded`` whether it was built with
    the GIL optional (--disable-gil), whatever its state now."""

    path: str
    executable: str
    version: str
    label: str
    gil_enabled: bool
    gilstudy_version: str | None = None
    identity: dict = field(default_factory=dict, compare=False, repr=False)
    implementation: str = "CPython"
    free_threaded: bool = False

    @property
    def version_info(self) -> tuple[int, ...]:
        """The version as a tuple of ints, (3, 13, 1), to compare and sort by."""
        return tuple(int(part) for part in self.version.split("."))


def locate(path: str | os.PathLike) -> str:
    """The executable file ``path`` names: itself when it has a directory part, else the
    command of that name on PATH.

    Raises ValueError ``PATH: what is wrong`` when there is no such file or command, or it
    is a directory, or it is not executable.
    """
    path = os.fspath(path)
    if os.sep not in path and (os.altsep is None or os.altsep not in path):
        found = shutil.which(path)
        if found is None:
            raise ValueError(f"{path}: no such file, and no such command on PATH")
        return found
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a Python interpreter")
    if not os.access(path, os.X_OK):
        raise ValueError(f"{path}: is not executable")
    return path


def probe(path: str | os.PathLike, module: str | None = None,
          timeout_s: float = PROBE_TIMEOUT_S) -> Python:
    """Ask the interpreter ``path`` (a file, or a command on PATH) what it is; return its
    facts.

    Runs it once with a short script that any Python from 2.7 on can run, with nothing
    installed. With ``module`` (a gilstudy module, such as 'gilstudy.compare.child'),
    gilstudy is required there: the interpreter must be a version gilstudy supports and
    import ``module``, whose ``identify()`` (if it has one) becomes ``Python.identity``.

    Raises ValueError ``PATH: what is wrong``: locate()'s, or when it cannot be started,
    does not answer within ``timeout_s`` seconds (it is then killed) or does not behave like
    a Python; with ``module``, also when it is older than GILSTUDY_MIN_PYTHON, has no
    gilstudy, or a gilstudy that cannot import ``module``.
    """
    text = os.fspath(path)
    command = locate(text)
    try:
        with Child(command, ["-c", _PROBE_SCRIPT, module or ""], where=text,
                   stdin=False) as child:
            output = child.output(timeout_s)
            status, said = child.process.returncode, child.last_words()
    except PythonExecutableFailed as exc:
        raise ValueError(str(exc)) from None
    line = next((ln for ln in output.splitlines() if ln.startswith(_PROBE_MARK)), None)
    try:
        answer = json.loads(line[len(_PROBE_MARK):]) if line is not None else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        said = said or _last_line(output)
        printed = f"printed {said!r}" if said else "printed nothing"
        raise ValueError(f"{text}: is not a Python interpreter (asked to run a Python script, "
                         f"it {printed} and exited with status {status})")
    version = tuple(answer["version"])
    if module is not None:
        _check_import(text, module, version, answer)
    return Python(path=command, executable=answer["executable"],
                  version=".".join(map(str, version)),
                  label=machine.interpreter_label(version, answer["free_threaded"]),
                  gil_enabled=answer["gil_enabled"], gilstudy_version=answer.get("gilstudy"),
                  identity=answer.get("identity", {}),
                  implementation=answer.get("implementation", "CPython"),
                  free_threaded=answer["free_threaded"])


def _check_import(text: str, module: str, version: tuple, answer: dict) -> None:
    """Raise ValueError unless the probe imported gilstudy's ``module`` there."""
    if version < GILSTUDY_MIN_PYTHON:
        raise ValueError(f"{text}: is Python {'.'.join(map(str, version))}; gilstudy needs "
                         f"Python {'.'.join(map(str, GILSTUDY_MIN_PYTHON))} or later")
    if "gilstudy" not in answer:
        if answer.get("missing") == "gilstudy":
            raise ValueError(f"{text}: gilstudy is not installed there (install it there with "
                             "pip, or run make ftpython for the free-threaded build)")
        raise ValueError(f"{text}: gilstudy cannot be imported there: {answer['error']}")
    if "identity" not in answer:
        missing = answer.get("missing") or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise ValueError(f"{text}: its gilstudy {answer['gilstudy']} is too old (it has no "
                             f"{module}): install this gilstudy there")
        raise ValueError(f"{text}: {module} cannot be imported there: {answer['error']}")


@dataclass(frozen=True)
class Unusable:
    """An interpreter that survey() was given or found but cannot use: ``path`` as given,
    and ``reason``, one line that starts with it ('PATH: is not a Python interpreter ...')."""

    path: str
    reason: str


def _pyenv_root() -> str:
    """Where pyenv keeps its versions: $PYENV_ROOT, else what `pyenv root` says, else
    ~/.pyenv."""
    root = os.environ.get("PYENV_ROOT")
    pyenv = shutil.which("pyenv")
    if not root and pyenv:
        try:
            done = subprocess.run([pyenv, "root"], capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S)
            root = done.stdout.strip() if done.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            root = None
    return root or os.path.expanduser("~/.pyenv")


def _pythons_in(directory: str) -> list[str]:
    """The executables in ``directory`` named like a CPython interpreter, sorted by name."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    paths = [os.path.join(directory, name) for name in names
             if _EXECUTABLE_NAME.fullmatch(name)]
    return [path for path in paths if os.path.isfile(path) and os.access(path, os.X_OK)]


def _file_identity(path: str) -> tuple[int, int] | str:
    """What makes two paths one interpreter: the (device, inode) of the file they lead to,
    through symbolic and hard links alike (a python3.13t build installs python3.13 as a hard
    link to it); the path itself when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return path
    return stat.st_dev, stat.st_ino


def installed() -> list[str]:
    """The Python interpreters on this machine, as paths, one per real file, in this order:
    this interpreter; the project's own (.venv and .venv-3.13t in the current directory, a
    gilstudy checkout; $GILSTUDY_FTPYTHON; the builds `make ftpython` caches in
    $GILSTUDY_CACHE, by default ~/.cache/gilstudy); pyenv's versions ($(pyenv root)/versions);
    then every directory on PATH except pyenv's own (its shims stand for the versions
    already listed, or for none). Where two names lead to the same file, the first is kept,
    so a venv with gilstudy installed stands for the interpreter it was made from.

    Nothing here is run (survey() does that); a directory that cannot be read is passed over.
    """
    cache = os.environ.get("GILSTUDY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gilstudy")
    pyenv_root = os.path.realpath(_pyenv_root())
    paths = [sys.executable]
    for venv in (".venv", ".venv-3.13t"):
        paths += _pythons_in(os.path.join(os.getcwd(), venv, "bin"))
    if os.environ.get("GILSTUDY_FTPYTHON"):
        paths.append(os.environ["GILSTUDY_FTPYTHON"])
    for bin_dir in sorted(glob.glob(os.path.join(cache, "cpython-*", "bin"))):
        paths += _pythons_in(bin_dir)
    for bin_dir in sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin"))):
        paths += _pythons_in(bin_dir)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        real = os.path.realpath(directory or ".")
        if real != pyenv_root and not real.startswith(pyenv_root + os.sep):
            paths += _pythons_in(directory or ".")
    seen: set = set()
    unique = []
    for path in paths:
        identity = _file_identity(path)
        if identity not in seen:
            seen.add(identity)
            unique.append(path)
    return unique


def _probe_one(name: str, minimum: tuple[int, ...], timeout_s: float) -> "Python | Unusable":
    """probe(name), or an Unusable saying why not: probe()'s ValueError, another
    implementation than CPython, or a version older than ``minimum``."""
    try:
        python = probe(name, timeout_s=timeout_s)
    except ValueError as exc:
        return Unusable(name, str(exc))
    if python.implementation != "CPython":
        return Unusable(name, f"{name}: is {python.implementation} {python.version}, not "
                              "CPython")
    if python.version_info < tuple(minimum):
        return Unusable(name, f"{name}: is Python {python.version}; this needs Python "
                              f"{'.'.join(map(str, minimum))} or later")
    return python


def survey(names: Sequence[str], minimum: tuple[int, ...] = (2, 7),
           timeout_s: float | None = None) -> "list[Python | Unusable]":
    """The CPython interpreters ``names`` name: paths, commands on PATH, or ALL for every
    one that installed() finds. Each is probed (in parallel, nothing installed needed) and
    kept once per real executable, the first name kept; they come sorted by version, a
    free-threaded build after the GIL build of the same version, and then, in the order
    given, an Unusable for each name that cannot be used: missing, not a Python, silent for
    ``timeout_s`` seconds (default probe_timeout(); it is killed), not CPython, or older
    than ``minimum``. Never raises for a bad interpreter: the caller reports the Unusable
    ones and goes on with the others."""
    timeout_s = probe_timeout() if timeout_s is None else timeout_s
    wanted: list[str] = []
    for name in names:
        wanted += installed() if name == ALL else [os.fspath(name)]
    seen: set = set()
    unique = []
    for name in wanted:
        try:
            identity = _file_identity(locate(name))
        except ValueError:
            identity = name
        if identity not in seen:
            seen.add(identity)
            unique.append(name)
    if not unique:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(unique))) as pool:
        found = list(pool.map(lambda name: _probe_one(name, minimum, timeout_s), unique))
    pythons, unusable, executables = [], [], set()
    for entry in found:
        if isinstance(entry, Unusable):
            unusable.append(entry)
        elif _file_identity(entry.executable) not in executables:
            executables.add(_file_identity(entry.executable))
            pythons.append(entry)
    pythons.sort(key=lambda python: (python.version_info, python.free_threaded))
    return pythons + unusable


def _last_line(text: str, limit: int = 300) -> str:
    """The last line of ``text`` that is not blank, stripped and cut to ``limit`` characters;
    '' when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


class Child:
    """``PATH ARG...`` running as a child process, for a command that talks to another
    interpreter. Its stdout is a text pipe (UTF-8, undecodable bytes replaced), and so is
    its stdin unless ``stdin=False`` (then it reads nothing); its stderr goes to a temporary
    file, so that when it fails its last words can be quoted. ``where`` names it in
    messages ('--python /usr/bin/python3.13t (3.13t)').

    Raises PythonExecutableFailed (``subject``: the path) when it cannot be started; ``output``,
    ``stalled`` and ``failed`` make the PythonExecutableFailed of a child that hangs or ends
    badly. A context manager: leaving the block ends the child (``close``).
    """

    def __init__(self, path: str, args: Sequence[str], where: str, stdin: bool = True):
        self.path = path
        self.where = where
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [path, *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=self._stderr, text=True, encoding="utf-8",
                errors="replace")
        except OSError as exc:
            self._stderr.close()
            raise PythonExecutableFailed(f"{where}: cannot be started: {exc.strerror or exc}",
                                    subject=path) from exc
        self._closed = False

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def output(self, timeout_s: float) -> str:
        """Everything the child writes on stdout, once it has exited. A child still running
        after ``timeout_s`` seconds is killed: PythonExecutableFailed (``stalled``)."""
        try:
            out, _ = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise self.stalled(timeout_s) from None
        return out

    def stderr_text(self) -> str:
        """What the child has written on stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def last_words(self) -> str:
        """The last line the child wrote on stderr ('' when none)."""
        return _last_line(self.stderr_text())

    def ending(self) -> str:
        """How the child ended, for a message: 'status 3: <its last line on stderr>', or
        'status 3, nothing on stderr'; 'its output closed but it is still running' when it
        does not exit within EXIT_TIMEOUT_S."""
        try:
            status = self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "its output closed but it is still running"
        said = self.last_words()
        return f"status {status}" + (f": {said}" if said else ", nothing on stderr")

    def failed(self, what: str) -> PythonExecutableFailed:
        """The error for a child that ended badly: '<where>: <what> (<ending>)'."""
        return PythonExecutableFailed(f"{self.where}: {what} ({self.ending()})",
                                      subject=self.path)

    def stalled(self, seconds: float) -> PythonExecutableFailed:
        """Kill the child, silent for ``seconds``, and return the error that says so."""
        self.process.kill()
        return PythonExecutableFailed(f"{self.where}: no answer for {seconds:.0f} s; the child "
                                 "process was killed", subject=self.path)

    def end(self) -> None:
        """Close its stdin (its cue to finish) and wait up to EXIT_TIMEOUT_S for it to exit;
        kill it if it does not. Its output stays readable."""
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass  # it is gone already
        try:
            self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """end() the child, then close its stdout and the stderr file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.end()
        self.process.stdout.close()
        self._stderr.close()
