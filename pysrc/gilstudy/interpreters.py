"""Subinterpreters as an execution model: each worker is an isolated interpreter of this
process, with a GIL of its own (PEP 684; concurrent.interpreters, PEP 734, Python 3.14+), in
a thread of its own, running the far-side entry (gilstudy.farside.serve_as_worker) over two
socket pairs. The near side is an ordinary RemoteConsumer: batching, acknowledgements,
errors and flow control are the coprocesses'; only the Peer differs.
"""

import itertools
import os
import platform
import socket
import sys
import threading
from typing import Any, Callable

from gilstudy import _checks, wire
from gilstudy.dispatch import start_runners
from gilstudy.errors import SubinterpretersUnavailable
from gilstudy.flow import EXIT_TIMEOUT, MAX_IN_FLIGHT
from gilstudy.remote import RemoteConsumer, open_remote
from gilstudy.startup import prepare

__all__ = ["MIN_VERSION", "unavailable_reason", "subinterpreter", "subinterpreters",
           "InterpreterPeer"]

# The first Python whose standard library has concurrent.interpreters.
MIN_VERSION = (3, 14)

_numbers = itertools.count(1)

# The directory gilstudy is imported from: the one path a new interpreter needs before the
# SETUP frame brings the caller's whole sys.path.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unavailable_reason() -> str | None:
    """None when this Python can start subinterpreters (it has concurrent.interpreters),
    else why not, naming the version needed: a check for whatever offers them as a model."""
    try:
        import concurrent.interpreters  # noqa: F401
    except ImportError:
        return (f"subinterpreters need Python {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
                f"(concurrent.interpreters); this is Python {platform.python_version()}")
    return None


def _require(owner: str):
    reason = unavailable_reason()
    if reason is not None:
        raise SubinterpretersUnavailable(f"{owner}: {reason}", name="concurrent.interpreters")
    import concurrent.interpreters

    return concurrent.interpreters


def _far_end(read_fd: int, write_fd: int, max_frame: int, package_root: str) -> int:
    """Run in the new interpreter: the far-side entry over the descriptors ``read_fd`` and
    ``write_fd``. It uses no globals, so concurrent.interpreters hands it over as code
    rather than by a name that the new interpreter could not import yet. Only
    ``package_root``, where gilstudy lies, is put on sys.path here, to import the entry;
    the caller's whole sys.path arrives with the SETUP frame. When the entry cannot even
    be imported, the descriptors are closed here, so the caller's reader sees the far side
    gone instead of waiting for it."""
    import os
    import sys

    if package_root not in sys.path:
        sys.path.insert(0, package_root)
    try:
        from gilstudy.farside import serve_as_worker
        from gilstudy.wire import Channel
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    channel = Channel.from_fds(read_fd, write_fd, max_frame=max_frame)
    # Frames may come before the caller's HELLO: its frame limit is the one it gave us.
    channel.peer_max_frame = max_frame
    return serve_as_worker(channel, "subinterpreter")


def _exit_status(failure) -> int:
    """The exit status of an interpreter whose far side raised ``failure`` (an
    ExecutionFailed), as a process would have it: SystemExit's code (None: 0, an int: that
    int, anything else: printed, then 1); any other exception: its traceback printed, 1."""
    info = failure.excinfo
    if getattr(info.type, "__name__", None) == "SystemExit":
        code = info.msg
        if code in ("", "None"):
            return 0
        if code.lstrip("-").isdigit():
            return int(code)
        print(code, file=sys.stderr)
        return 1
    print(failure, file=sys.stderr)
    return 1


class InterpreterPeer:
    """The Peer (gilstudy.remote.Peer) of a subinterpreter that subinterpreter() started:
    an isolated interpreter of this process, created, run and closed by a daemon thread of
    its own.

    ``wait(timeout)`` joins that thread and gives the interpreter's exit status: 0 when
    the far-side loop returned, 2 when it refused the channel, SystemExit's code when the
    consumer called sys.exit(), 1 (with the traceback on stderr) for anything else that
    escaped it. There is no pid: it runs in this process.

    An interpreter cannot be killed. ``stop(force)`` waits up to EXIT_TIMEOUT for it to end
    (its channel's writing side is closed by then, so it ends as soon as its consumer's
    current call returns); ``force`` first shuts the reply socket down, so that the far
    side's next write fails at once and this side's reader is released. An interpreter
    still running after that (a consumer that never returns) is left to its daemon thread,
    stop() returns False, and the process may exit without it.
    """

    pid = None

    def __init__(self, far_end: tuple, replies: socket.socket):
        self.name = f"subinterpreter {next(_numbers)}"
        self.exitcode: int | None = None
        self._replies = replies
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=far_end,
                                        name=f"gilstudy-{self.name.replace(' ', '-')}",
                                        daemon=True)
        self._thread.start()

    def _run(self, read_fd: int, write_fd: int, max_frame: int) -> None:
        interpreters = _require("subinterpreter")
        try:
            interpreter = interpreters.create()
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            self.exitcode = 1
            raise
        try:
            self.exitcode = interpreter.call(_far_end, read_fd, write_fd, max_frame,
                                             _PACKAGE_ROOT)
        except interpreters.ExecutionFailed as failure:
            self.exitcode = _exit_status(failure)
        finally:
            interpreter.close()

    def wait(self, timeout: float) -> int | None:
        self._thread.join(timeout)
        return None if self._thread.is_alive() else self.exitcode

    def _shut_replies(self) -> None:
        with self._lock:
            if self._replies is not None:
                try:
                    self._replies.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self, force: bool) -> bool:
        if force:
            self._shut_replies()
        ended = self.wait(EXIT_TIMEOUT) is not None
        if not ended:
            self._shut_replies()
        with self._lock:
            replies, self._replies = self._replies, None
        if replies is not None:
            replies.close()
        return ended


def subinterpreter(factory: Callable, *args: Any, results: Any = None,
                   max_frame: int = wire.MAX_FRAME, allowed=None,
                   max_in_flight: int = MAX_IN_FLIGHT) -> RemoteConsumer:
    """Start an isolated subinterpreter of this process, with its own GIL, that runs the
    consumer ``factory(*args)``; return the RemoteConsumer that feeds it.

    The twin of gilstudy.processes.spawn(), and the same in use: ``factory`` and ``args`` are
    pickled here (``factory`` by reference: importable by its module name, or defined in a
    main script that can be loaded again, see gilstudy.mainscript), the interpreter takes this one's sys.path, and it runs the far-side
    entry (gilstudy.farside) over two socket pairs, in a daemon thread of this process. It
    shares this process's file descriptors and standard streams, not its modules or
    objects: it imports what it needs afresh, and extension modules that do not support
    isolated interpreters (numpy) cannot be imported there. ``results``, ``max_frame``, ``allowed`` and
    ``max_in_flight`` are spawn()'s.

    Trouble is reported as for a coprocess (see RemoteConsumer): RemoteError when the
    consumer raises, with its traceback as the ``__cause__``; WorkerDied when the far
    side ends without closing its consumer (for instance the consumer calls sys.exit(),
    whose code is the ``exitcode``). An interpreter cannot be killed: abort() shuts its
    channel down at once and waits up to EXIT_TIMEOUT for the consumer's current call to
    return; a consumer that never returns keeps its interpreter and daemon thread (see
    InterpreterPeer). Raises SubinterpretersUnavailable (a RunnerUnavailable, and a
    ModuleNotFoundError), naming the version needed, on a Python
    without concurrent.interpreters. For example::

        from gilstudy.kernels.work import KernelConsumer
        with subinterpreter(KernelConsumer, "count_primes", "python", results=collect) as worker:
            for index in range(100):
                worker.send((index, (0, 10_000)))
        # collect got (index, 1229) for every index
    """
    _require("subinterpreter")
    start = prepare("subinterpreter", factory, args, results=results, max_frame=max_frame,
                    allowed=allowed, max_in_flight=max_in_flight,
                    worker="a subinterpreter (it has a __main__ of its own)")
    # Socket pairs rather than pipes: the far side's ends live in this process, so only a
    # shutdown (which a pipe lacks) can release this side's reader while it runs.
    items_near, items_far = socket.socketpair()
    replies_near, replies_far = socket.socketpair()
    try:
        replies_handle = socket.socket(fileno=os.dup(replies_near.fileno()))
    except BaseException:
        for end in (items_near, items_far, replies_near, replies_far):
            end.close()
        raise
    channel = wire.Channel.from_fds(replies_near.detach(), items_near.detach(),
                                    **start.options)
    far_end = (items_far.detach(), replies_far.detach(), max_frame)
    return open_remote(channel, InterpreterPeer(far_end, replies_handle), start,
                       where="socket pair")


def subinterpreters(factory: Callable, n: int, *args: Any, results: Any = None,
                    max_frame: int = wire.MAX_FRAME, allowed=None,
                    max_in_flight: int = MAX_IN_FLIGHT):
    """``n`` subinterpreters, each running its own ``factory(*args)``, behind one Dispatch:
    the interpreter twin of threads() and coprocesses(), started with
    gilstudy.dispatch.start_runners (if one fails to start, those already started are
    aborted and the error is raised). Give a thread-safe ``results`` (a Collect): each
    worker's reader thread sends to it. For example::

        from gilstudy.consumers import Collect
        from gilstudy.kernels.work import KernelConsumer
        results = Collect()
        with subinterpreters(KernelConsumer, 2, "count_primes", "python", results=results) as fan:
            for index in range(8):
                fan.send((index, (index * 1000, index * 1000 + 1000)))
        # results.items holds (index, count) for all eight ranges, in arrival order
    """
    _checks.positive_int("subinterpreters", "n", n)
    _checks.positive_int("subinterpreters", "max_in_flight", max_in_flight)
    _require("subinterpreters")
    return start_runners(lambda index: subinterpreter(factory, *args, results=results,
                                                      max_frame=max_frame, allowed=allowed,
                                                      max_in_flight=max_in_flight),
                         n, owner="subinterpreters")
