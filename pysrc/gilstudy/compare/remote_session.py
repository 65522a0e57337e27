"""The compare models under another interpreter (`gilstudy compare --python`): probe()
checks that it has this gilstudy (gilstudy.pythons finds and asks it), and RemoteSession
runs the models there in a child process (`PATH -m gilstudy.compare --serve`, compare/
child.py) one step at a time over a pipe, so that its repeats interleave with ours.
"""

import json
import os
import queue
import threading
from typing import Callable, TextIO

from gilstudy import pythons
from gilstudy.compare import registry
from gilstudy.compare.document import SCHEMA_VERSION
from gilstudy.compare.facts import ModelInfo, Row
from gilstudy.compare.measure import Timing
from gilstudy.errors import InterpreterFailed, ModelFailed, RemoteError, WrongAnswer
from gilstudy.pythons import Python

__all__ = ["PROTOCOL_VERSION", "CHILD_MODULE", "probe", "checked", "RemoteSession"]

# Version of the line protocol between RemoteSession and child.serve(); both sides must
# agree, as they must on the compare SCHEMA_VERSION of the rows they exchange.
PROTOCOL_VERSION = 2

# The module that answers the probe (its identify()) and serves the session.
CHILD_MODULE = "gilstudy.compare.child"

# The errors a child reports that keep their class here: what failed is a model, not the
# interpreter. Any other error of the child is the interpreter's: InterpreterFailed.
_MODEL_ERRORS = {cls.__name__: cls for cls in (ModelFailed, WrongAnswer)}


def probe(path: str | os.PathLike, timeout_s: float = pythons.PROBE_TIMEOUT_S) -> Python:
    """Check that ``path`` is a Python interpreter with this gilstudy installed; return
    its facts.

    Runs it once (gilstudy.pythons.probe(), importing CHILD_MODULE there). Raises
    ValueError ``PATH: what is wrong`` when the file is missing or not executable, does not
    behave like a Python, is older than 3.11, has no gilstudy (or one that cannot be
    imported, or too old to have CHILD_MODULE), or has a gilstudy whose compare schema or
    --python protocol differs from this one's.
    """
    python = pythons.probe(path, module=CHILD_MODULE, timeout_s=timeout_s)
    if not _speaks_our_protocol(python):
        raise ValueError(f"{os.fspath(path)}: its gilstudy {python.gilstudy_version} writes "
                         f"compare schema {python.identity.get('schema')} over --python "
                         f"protocol {python.identity.get('protocol')}, this one schema "
                         f"{SCHEMA_VERSION} over protocol {PROTOCOL_VERSION}: install this "
                         "gilstudy there")
    return python


def _speaks_our_protocol(python: Python) -> bool:
    identity = python.identity
    return (identity.get("schema"), identity.get("protocol")) == (SCHEMA_VERSION,
                                                                  PROTOCOL_VERSION)


def checked(python: str | os.PathLike | Python, option: str) -> Python:
    """``python`` probed: a Python that probe() returned is taken as it is, anything else (a
    path, or a Python probed for another purpose) is probed now. The ValueError of a bad
    one starts with ``option`` ('--python' on the command line)."""
    if isinstance(python, Python) and _speaks_our_protocol(python):
        return python
    try:
        return probe(python.path if isinstance(python, Python) else python,
                     timeout_s=pythons.probe_timeout())
    except ValueError as exc:
        raise ValueError(f"{option} {exc}") from None


class RemoteSession:
    """The compare models under another interpreter, in a child process driven step by
    step: the same methods as gilstudy.compare.runner.LocalSession (``run_reference``,
    ``start``, ``run_repeat``, ``stop``, ``finish``, ``close``), each one request and one
    reply on the child's stdin and stdout, one JSON object per line. The child reports
    progress as it goes.

    Errors: a model that fails or computes a wrong answer in the child raises ModelFailed
    or WrongAnswer with the child's message (the model named ``model@label``), and a
    RemoteError carrying the child's traceback as the cause. Any other failure is the
    interpreter's, InterpreterFailed (``subject``: its path): the child cannot be started,
    exits early (the message gives its exit status and the last line it wrote to stderr),
    reports an error of its own, writes what is not the protocol (it is then killed), or
    stays silent for longer than its own patience plus a minute (killed too). ``close()``
    ends the child (stopping its workers) and is idempotent.
    """

    def __init__(self, python: Python, label: str, spec: dict,
                 chosen: list[registry.Model], reference: str, counts: list[int], repeat: int,
                 step: Callable[[str], None] = lambda what: None, timing: Timing = Timing()):
        self.python = python
        self.executable = python.executable
        self.label = label
        self._step = step
        self._patience_s = pythons.probe_timeout()
        self._replies: queue.Queue = queue.Queue()
        self._child = pythons.Child(python.path, ["-m", "gilstudy.compare", "--serve"],
                                    where=f"--python {python.path} ({label})")
        self._closed = False
        self._reader = threading.Thread(target=self._read, args=(self._child.process.stdout,),
                                        name=f"gilstudy-python-{label}", daemon=True)
        self._reader.start()
        try:
            hello = self._receive()
            registered = set(hello["models"])
            ask = [m.name for m in chosen if m.name in registered]
            setup = self._call("setup", workload=spec, models=ask, reference=reference,
                               workers=counts, repeat=repeat, label=label,
                               timing=timing.to_dict())
        except BaseException:
            self.close()
            raise
        infos = {info["registered_as"]: ModelInfo(**info) for info in setup["models"]}
        self.infos = [infos.get(m.name) or ModelInfo(
            name=setup["labels"].get(m.name, m.name), impl=m.impl, summary=m.summary,
            available=False, reason=f"not registered in the gilstudy of {python.path}",
            reusable=m.reusable, max_workers=m.max_workers, shares_gil=m.shares_gil,
            interpreter=label, registered_as=m.name)
            for m in chosen]
        self.worker_counts: list[int] = setup["worker_counts"]
        self.steps: int = setup["steps"]

    def run_reference(self, patience_s: float) -> tuple[object, float]:
        """The child's untimed reference run: its answer (as answer_summary() gives it)
        and its seconds. ``patience_s`` bounds the wait."""
        self._patience_s = patience_s + 60.0
        reply = self._call("run_reference")
        self._patience_s = max(reply["patience_s"], pythons.probe_timeout()) + 60.0
        return reply["answer"], reply["seconds"]

    def start(self, workers: int) -> None:
        self._call("start", workers=workers)

    def run_repeat(self, repeat_index: int) -> None:
        self._call("run_repeat", repeat_index=repeat_index)

    def stop(self) -> None:
        self._call("stop")

    def finish(self) -> tuple[list[Row], dict]:
        reply = self._call("finish")
        rows = [Row.from_wire(row, self.label) for row in reply["rows"]]
        return rows, reply["environment"]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._child.end()  # closing its stdin tells it to stop its workers and exit
        self._reader.join(pythons.EXIT_TIMEOUT_S)
        self._child.close()

    # ---- the pipe ---------------------------------------------------------------------

    def _read(self, pipe: TextIO) -> None:
        try:
            for line in pipe:
                self._replies.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us: close() is ending the child
        finally:
            self._replies.put(None)

    def _broken(self, what: str) -> InterpreterFailed:
        """Kill the child, which broke the protocol, and return the error that says so:
        whatever it is, it will not stop when asked the protocol's way."""
        self._child.process.kill()
        return InterpreterFailed(f"{self._child.where}: the child process {what}, which is not "
                                 "the --python protocol", subject=self.python.path)

    def _call(self, op: str, **fields) -> object:
        try:
            self._child.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self._child.process.stdin.flush()
        except OSError:
            pass  # the child is gone: _receive() reports how it ended
        return self._receive()

    def _receive(self) -> object:
        """The next reply, after forwarding the progress lines before it."""
        while True:
            try:
                line = self._replies.get(timeout=self._patience_s)
            except queue.Empty:
                raise self._child.stalled(self._patience_s) from None
            if line is None:
                raise self._child.failed("the child process exited early")
            try:
                message = json.loads(line)
            except ValueError:
                raise self._broken(f"wrote {line.strip()[:200]!r}") from None
            if "progress" in message:
                self._step(message["progress"])
            elif "error" in message:
                cause = RemoteError(message["type"], message["error"], message["traceback"])
                error = _MODEL_ERRORS.get(message["type"])
                if error is None:
                    raise InterpreterFailed(message["error"], subject=self.python.path) from cause
                raise error(message["error"], subject=message.get("subject")) from cause
            elif "ok" in message or "hello" in message:
                return message.get("ok", message.get("hello"))
            else:
                raise self._broken(f"sent {sorted(message)}")
