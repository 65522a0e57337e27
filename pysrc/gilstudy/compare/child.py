"""The child's end of `gilstudy compare --python`: `python -m gilstudy.compare --serve` runs
child_main(), which answers the parent's RemoteSession (compare/remote_session.py) on stdin
and stdout by driving one LocalSession (compare/runner.py) in this interpreter.
"""

import json
import os
import sys
import traceback
from typing import Callable, TextIO

from gilstudy import __version__, machine
from gilstudy.compare import registry
from gilstudy.compare.document import SCHEMA_VERSION
from gilstudy.compare.measure import Timing
from gilstudy.compare.remote_session import PROTOCOL_VERSION
from gilstudy.compare.runner import LocalSession, make_work

__all__ = ["identify", "serve", "child_main"]


def identify() -> dict:
    """What this interpreter's gilstudy tells a parent before anything runs: the versions
    of the protocol and of the rows' schema, and the models registered here."""
    return {"protocol": PROTOCOL_VERSION, "schema": SCHEMA_VERSION, "gilstudy": __version__,
            "label": machine.interpreter_label(), "gil_enabled": machine.gil_enabled(),
            "models": registry.names()}


class _Server:
    """One LocalSession, driven by the requests RemoteSession sends."""

    def __init__(self, progress: Callable[[str], None]):
        self._progress = progress
        self.session = None

    def setup(self, workload, models, reference, workers, repeat, label, timing):
        chosen = registry.select(models)
        work = make_work(workload)
        self.session = LocalSession(work, chosen, reference, workers, repeat, label,
                                    labelled=True, step=self._progress,
                                    timing=Timing.from_dict(timing))
        return {"models": [vars(info) for info in self.session.infos],
                "labels": {m.name: m.label_for(work) for m in chosen},
                "worker_counts": self.session.worker_counts, "steps": self.session.steps}

    def run_reference(self):
        answer, seconds = self.session.run_reference()
        return {"answer": self.session.workload.summary(answer), "seconds": seconds,
                "patience_s": self.session.patience_s}

    def start(self, workers):
        self.session.start(workers)

    def run_repeat(self, repeat_index):
        self.session.run_repeat(repeat_index)

    def stop(self):
        self.session.stop()

    def finish(self):
        rows, environment = self.session.finish()
        return {"rows": [r.to_wire() for r in rows], "environment": environment}


_OPS = ("setup", "run_reference", "start", "run_repeat", "stop", "finish")


def serve(requests: TextIO, replies: TextIO) -> int:
    """Answer RemoteSession's requests until ``requests`` ends; return the exit status.

    Writes a hello (identify()), then one reply per request. A failure is sent as an error
    reply (message, class name, traceback, and the ``subject`` of a CompareError) and ends
    the session with status 1; the session's workers are stopped either way.
    """

    def reply(**message) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    server = _Server(progress=lambda what: reply(progress=what))
    reply(hello=identify())
    try:
        for line in requests:
            request = json.loads(line)
            op = request.pop("op")
            if op not in _OPS:
                raise ValueError(f"unknown request {op!r}")
            reply(ok=getattr(server, op)(**request))
    except Exception as exc:
        try:
            reply(error=str(exc), type=type(exc).__name__, traceback=traceback.format_exc(),
                  subject=getattr(exc, "subject", None))
        except OSError:
            pass  # the parent is gone; nobody is left to tell
        return 1
    finally:
        if server.session is not None:
            server.session.close()
    return 0


def child_main(argv: list[str]) -> int:
    """`python -m gilstudy.compare --serve`: serve() on stdin and stdout. Whatever else
    writes to stdout (a kernel, a library) goes to stderr instead, so that it cannot
    corrupt the replies."""
    if argv != ["--serve"]:
        print("usage: python -m gilstudy.compare --serve\n(the other end of `gilstudy compare "
              "--python`; run `gilstudy compare` instead)", file=sys.stderr)
        return 2
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with replies:
        return serve(sys.stdin, replies)
