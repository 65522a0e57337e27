# Other Python interpreters for `gilstudy compare --python`: probe() checks that a path is
# a Python with this gilstudy installed, RemoteSession runs the compare models under it in
# a child process (`PATH -m gilstudy.compare --serve`, whose side is compare/child.py) one
# step at a time over a pipe, so that its repeats interleave with this interpreter's.

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable, TextIO

from gilstudy.compare import registry
from gilstudy.compare.report import SCHEMA_VERSION, ModelInfo, Row
from gilstudy.compare.workload import Workload
from gilstudy.errors import RemoteError

__all__ = ["PROTOCOL_VERSION", "Python", "probe", "checked", "RemoteSession"]

# Version of the line protocol between RemoteSession and child.serve(); both sides must agree,
# as they must on the compare SCHEMA_VERSION of the rows they exchange.
PROTOCOL_VERSION = 1

# Python versions gilstudy supports (pyproject's requires-python).
_MIN_PYTHON = (3, 11)

# Seconds a child interpreter may take to start, import gilstudy and answer (a cold start
# on a loaded machine takes a second or two; this is only reached if one hangs), and to
# exit once told to.
_START_PATIENCE_S = 120.0
_EXIT_PATIENCE_S = 60.0

# Run with `PATH -c`, by any Python: so no f-strings, and every failure ends in the answer.
_PROBE_MARK = "gilstudy-probe "
_PROBE_SCRIPT = """\
import json, sys
answer = {"version": list(sys.version_info[:3]), "executable": sys.executable}
try:
    import gilstudy
    answer["gilstudy"] = getattr(gilstudy, "__version__", "unknown")
    from gilstudy.compare import child
    answer.update(child.identify())
except Exception as exc:
    answer["missing"] = getattr(exc, "name", None)
    answer["error"] = "%s: %s" % (type(exc).__name__, exc)
sys.stdout.write("gilstudy-probe " + json.dumps(answer) + "\\n")
"""


@dataclass(frozen=True)
class Python:
    """An interpreter that probe() found fit for ``--python``: ``path`` as given (or as
    found on PATH), its ``version``, ``label`` ('3.13t'), whether it starts with the GIL
    enabled, and the gilstudy version installed there."""

    path: str
    executable: str
    version: str
    label: str
    gil_enabled: bool
    gilstudy_version: str


def _locate(path: str) -> str:
    """The file ``path`` names: itself when it has a directory part, else the command of
    that name on PATH. Raises ValueError when it is missing, a directory or not executable."""
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


def probe(path: str | os.PathLike, timeout_s: float = _START_PATIENCE_S) -> Python:
    """Check that ``path`` is a Python interpreter with this gilstudy installed; return
    its facts.

    Runs ``path -c SCRIPT`` once. Raises ValueError ``PATH: what is wrong`` when the file
    is missing or not executable, does not behave like a Python, is older than 3.11, has
    no gilstudy (or one that cannot be imported), or has a gilstudy whose compare schema
    or --python protocol differs from this one's.
    """
    text = os.fspath(path)
    command = _locate(text)
    try:
        done = subprocess.run([command, "-c", _PROBE_SCRIPT], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout_s, errors="replace")
    except subprocess.TimeoutExpired:
        raise ValueError(f"{text}: did not answer within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise ValueError(f"{text}: cannot be run: {exc.strerror or exc}") from None
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(_PROBE_MARK)), None)
    try:
        answer = json.loads(line[len(_PROBE_MARK):]) if line is not None else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        said = _last_line(done.stderr) or _last_line(done.stdout)
        printed = f"printed {said!r}" if said else "printed nothing"
        raise ValueError(f"{text}: is not a Python interpreter (asked to run a Python script, "
                         f"it {printed} and exited with status {done.returncode})")
    version = tuple(answer["version"])
    if version < _MIN_PYTHON:
        raise ValueError(f"{text}: is Python {'.'.join(map(str, version))}; gilstudy needs "
                         f"Python {'.'.join(map(str, _MIN_PYTHON))} or later")
    if "gilstudy" not in answer:
        if answer.get("missing") == "gilstudy":
            raise ValueError(f"{text}: gilstudy is not installed there (install it there with "
                             "pip, or run make ftpython for the free-threaded build)")
        raise ValueError(f"{text}: gilstudy cannot be imported there: {answer['error']}")
    theirs = answer["gilstudy"]
    if "protocol" not in answer:
        if (answer.get("missing") or "").startswith("gilstudy.compare"):
            raise ValueError(f"{text}: its gilstudy {theirs} is too old for --python (it has no "
                             "gilstudy.compare.child): install this gilstudy there")
        raise ValueError(f"{text}: gilstudy.compare cannot be imported there: {answer['error']}")
    if (answer["schema"], answer["protocol"]) != (SCHEMA_VERSION, PROTOCOL_VERSION):
        raise ValueError(f"{text}: its gilstudy {theirs} writes compare schema "
                         f"{answer['schema']} over --python protocol {answer['protocol']}, "
                         f"this one schema {SCHEMA_VERSION} over protocol {PROTOCOL_VERSION}: "
                         "install this gilstudy there")
    return Python(path=command, executable=answer["executable"],
                  version=".".join(map(str, version)), label=answer["label"],
                  gil_enabled=answer["gil_enabled"], gilstudy_version=theirs)


def checked(python: str | os.PathLike | Python, option: str) -> Python:
    """``python`` probed (a Python is returned as it is); the ValueError of a bad one
    starts with ``option`` ('--python' on the command line)."""
    if isinstance(python, Python):
        return python
    try:
        return probe(python)
    except ValueError as exc:
        raise ValueError(f"{option} {exc}") from None


def _last_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


# ---- the parent's side ---------------------------------------------------------------

class RemoteSession:
    """The compare models under another interpreter, in a child process driven step by
    step: the same methods as gilstudy.compare.runner.LocalSession (``run_reference``,
    ``start``, ``run_repeat``, ``stop``, ``finish``, ``close``), each one request and one
    reply on the child's stdin and stdout, one JSON object per line. The child reports
    progress as it goes; a reply not arriving while the child is silent for longer than
    its own patience (plus a minute) means it hangs: it is killed and RuntimeError raised.

    Errors: a model failing in the child raises RuntimeError with the child's message
    (the model named ``model@label``) and a RemoteError carrying its traceback as the
    cause; a child that exits early raises RuntimeError with its exit status and the last
    line it wrote to stderr. ``close()`` ends the child (stopping its workers) and is
    idempotent.
    """

    def __init__(self, python: Python, label: str, workload: Workload,
                 chosen: list[registry.Model], reference: str, counts: list[int], repeat: int,
                 step: Callable[[str], None] = lambda what: None):
        self.python = python
        self.executable = python.executable
        self.label = label
        self._step = step
        self._patience_s = _START_PATIENCE_S
        self._stderr = tempfile.TemporaryFile()
        self._replies: queue.Queue = queue.Queue()
        try:
            self._process = subprocess.Popen(
                [python.path, "-m", "gilstudy.compare", "--serve"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, text=True, encoding="utf-8")
        except OSError as exc:
            self._stderr.close()
            raise RuntimeError(f"--python {python.path}: cannot be started: "
                               f"{exc.strerror or exc}") from exc
        self._reader = threading.Thread(target=self._read, args=(self._process.stdout,),
                                        name=f"gilstudy-python-{label}", daemon=True)
        self._reader.start()
        try:
            hello = self._receive()
            registered = set(hello["models"])
            ask = [m.name for m in chosen if m.name in registered]
            setup = self._call("setup", kernel=workload.kernel, size=workload.size,
                               items=workload.items_count, models=ask, reference=reference,
                               workers=counts, repeat=repeat, label=label)
        except BaseException:
            self.close()
            raise
        infos = {info["name"]: ModelInfo(**info) for info in setup["models"]}
        self.infos = [infos.get(m.name) or ModelInfo(
            name=m.name, impl=m.impl, summary=m.summary, available=False,
            reason=f"not registered in the gilstudy of {python.path}", reusable=m.reusable,
            max_workers=m.max_workers, shares_gil=m.shares_gil, interpreter=label)
            for m in chosen]
        self.worker_counts: list[int] = setup["worker_counts"]
        self.steps: int = setup["steps"]

    def run_reference(self, patience_s: float) -> tuple[object, float]:
        """The child's untimed reference run: its answer (as answer_summary() gives it)
        and its seconds. ``patience_s`` bounds the wait."""
        self._patience_s = patience_s + 60.0
        reply = self._call("run_reference")
        self._patience_s = max(reply["patience_s"], _START_PATIENCE_S) + 60.0
        return reply["answer"], reply["seconds"]

    def start(self, workers: int) -> None:
        self._call("start", workers=workers)

    def run_repeat(self, repeat_index: int) -> None:
        self._call("run_repeat", repeat_index=repeat_index)

    def stop(self) -> None:
        self._call("stop")

    def finish(self) -> tuple[list[Row], dict]:
        reply = self._call("finish")
        rows = [Row(**row, interpreter=self.label) for row in reply["rows"]]
        return rows, reply["environment"]

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.stdin.close()  # the child's cue to stop its workers and exit
        except OSError:
            pass  # it is gone already
        try:
            process.wait(timeout=_EXIT_PATIENCE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._reader.join(_EXIT_PATIENCE_S)
        process.stdout.close()
        self._stderr.close()

    # ---- the pipe ---------------------------------------------------------------------

    def _read(self, pipe: TextIO) -> None:
        try:
            for line in pipe:
                self._replies.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us: close() is ending the child
        finally:
            self._replies.put(None)

    def _where(self) -> str:
        return f"--python {self.python.path} ({self.label})"

    def _call(self, op: str, **fields) -> object:
        try:
            self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # the child is gone: _receive() reports how it ended
        return self._receive()

    def _receive(self) -> object:
        """The next reply, after forwarding the progress lines before it."""
        while True:
            try:
                line = self._replies.get(timeout=self._patience_s)
            except queue.Empty:
                self._process.kill()
                raise RuntimeError(f"{self._where()}: no answer for {self._patience_s:.0f} s; "
                                   "the child process was killed") from None
            if line is None:
                raise RuntimeError(f"{self._where()}: the child process exited early "
                                   f"({self._exit_text()})")
            try:
                message = json.loads(line)
            except ValueError:
                raise RuntimeError(f"{self._where()}: the child process wrote "
                                   f"{line.strip()[:200]!r}, which is not the --python "
                                   "protocol") from None
            if "progress" in message:
                self._step(message["progress"])
            elif "error" in message:
                raise RuntimeError(message["error"]) from RemoteError(
                    message["type"], message["error"], message["traceback"])
            elif "ok" in message or "hello" in message:
                return message.get("ok", message.get("hello"))
            else:
                raise RuntimeError(f"{self._where()}: the child process sent {sorted(message)}, "
                                   "which is not the --python protocol")

    def _exit_text(self) -> str:
        try:
            status = self._process.wait(timeout=_EXIT_PATIENCE_S)
        except subprocess.TimeoutExpired:
            return "its output closed but it is still running"
        self._stderr.seek(0)
        said = _last_line(self._stderr.read().decode("utf-8", errors="replace"))
        return f"status {status}" + (f": {said}" if said else ", nothing on stderr")
