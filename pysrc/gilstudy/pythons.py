# Other Python interpreters on this machine, for every command that runs under them
# (`gilstudy compare --python`, the experiments' --python): locate() turns a path or a
# command name into an executable, probe() asks it what it is (a Python), and Child runs a
# command under it, keeping its stderr so that a failure can quote the child's last words.

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Sequence

from gilstudy import machine
from gilstudy.errors import InterpreterFailed

__all__ = ["Python", "locate", "probe", "Child", "GILSTUDY_MIN_PYTHON", "PROBE_TIMEOUT_S",
           "EXIT_TIMEOUT_S"]

# The Python versions gilstudy supports (pyproject's requires-python).
GILSTUDY_MIN_PYTHON = (3, 11)

# Seconds an interpreter may take to start, import what the probe asks for and answer (a
# cold start on a loaded machine takes a second or two; this is only reached if one hangs),
# and to exit once told to.
PROBE_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0

# probe() runs this with `PATH -c SCRIPT MODULE`. It must run under any Python from 2.7 on
# with nothing installed, so: no f-strings, nothing outside the standard library, and every
# failure ends up in the answer, one JSON line after the marker.
_PROBE_MARK = "gilstudy-probe "
_PROBE_SCRIPT = """\
import json, sys, sysconfig
answer = {"version": list(sys.version_info[:3]), "executable": sys.executable,
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
    the module probe() was asked to import said of itself (its ``identify()``), else {}."""

    path: str
    executable: str
    version: str
    label: str
    gil_enabled: bool
    gilstudy_version: str | None = None
    identity: dict = field(default_factory=dict, compare=False, repr=False)


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
    except InterpreterFailed as exc:
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
                  identity=answer.get("identity", {}))


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

    Raises InterpreterFailed (``subject``: the path) when it cannot be started; ``output``,
    ``stalled`` and ``failed`` make the InterpreterFailed of a child that hangs or ends
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
            raise InterpreterFailed(f"{where}: cannot be started: {exc.strerror or exc}",
                                    subject=path) from exc
        self._closed = False

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def output(self, timeout_s: float) -> str:
        """Everything the child writes on stdout, once it has exited. A child still running
        after ``timeout_s`` seconds is killed: InterpreterFailed (``stalled``)."""
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

    def failed(self, what: str) -> InterpreterFailed:
        """The error for a child that ended badly: '<where>: <what> (<ending>)'."""
        return InterpreterFailed(f"{self.where}: {what} ({self.ending()})", subject=self.path)

    def stalled(self, seconds: float) -> InterpreterFailed:
        """Kill the child, silent for ``seconds``, and return the error that says so."""
        self.process.kill()
        return InterpreterFailed(f"{self.where}: no answer for {seconds:.0f} s; the child "
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
