"""Subinterpreters as an execution model: each worker is an isolated interpreter of this
process, with a GIL of its own (PEP 684; concurrent.interpreters, PEP 734, Python 3.14+), in
a thread of its own, running the coprocess child's entry (gilstudy.processes.main) over two
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
from gilstudy.processes import check_factory, open_link, setup_payload
from gilstudy.remote import EXIT_TIMEOUT, RemoteConsumer

__all__ = ["MIN_VERSION", "unavailable_reason", "subinterpreter", "subinterpreters",
           "InterpreterPeer"]

# The first Python whose standard library has concurrent.interpreters.
MIN_VERSION = (3, 14)

_numbers = itertools.count(1)


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
        raise ModuleNotFoundError(f"{owner}: {reason}", name="concurrent.interpreters")
    import concurrent.interpreters

    return concurrent.interpreters


def _far_end(argv: tuple, sys_path: tuple) -> int:
    """Run in the new interpreter: take the caller's sys.path, then the coprocess child's
    entry with ``argv``. It uses no globals, so concurrent.interpreters hands it over as
    code rather than by a name that the new interpreter could not import yet. When the
    entry cannot even be imported, the channel's ends are closed here, so the caller's
    reader sees the far side gone instead of waiting for it."""
    import os
    import sys

    sys.path[:] = sys_path
    try:
        from gilstudy.processes import main
    except BaseException:
        os.close(int(argv[3]))
        os.close(int(argv[4]))
        raise
    return main(list(argv))


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

    def __init__(self, argv: tuple, replies: socket.socket):
        self.name = f"subinterpreter {next(_numbers)}"
        self.exitcode: int | None = None
        self._replies = replies
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(argv, tuple(sys.path)),
                                        name=f"gilstudy-{self.name.replace(' ', '-')}",
                                        daemon=True)
        self._thread.start()

    def _run(self, argv: tuple, sys_path: tuple) -> None:
        interpreters = _require("subinterpreter")
        try:
            interpreter = interpreters.create()
        except BaseException:
            os.close(int(argv[3]))
            os.close(int(argv[4]))
            self.exitcode = 1
            raise
        try:
            self.exitcode = interpreter.call(_far_end, argv, sys_path)
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
                   max_frame: int = wire.MAX_FRAME, allowed=None) -> RemoteConsumer:
    """Start an isolated subinterpreter of this process, with its own GIL, that runs the
    consumer ``factory(*args)``; return the RemoteConsumer that feeds it.

    The twin of gilstudy.processes.spawn(), and the same in use: ``factory`` and ``args`` are
    pickled here (``factory`` by reference: importable by its module name, not defined in
    ``__main__``), the interpreter takes this one's sys.path, and it runs the spawned
    child's entry over two socket pairs, in a daemon thread of this process. It shares this
    process's file descriptors and standard streams, not its modules or objects: it imports
    what it needs afresh, and extension modules that do not support isolated interpreters
    (numpy) cannot be imported there. ``results``, ``max_frame`` and ``allowed`` are
    spawn()'s.

    Trouble is reported as for a coprocess (see RemoteConsumer): RemoteError when the
    consumer raises, with its traceback as the ``__cause__``; CoprocessDied when the far
    side ends without closing its consumer (for instance the consumer calls sys.exit(),
    whose code is the ``exitcode``). An interpreter cannot be killed: abort() shuts its
    channel down at once and waits up to EXIT_TIMEOUT for the consumer's current call to
    return; a consumer that never returns keeps its interpreter and daemon thread (see
    InterpreterPeer). Raises ModuleNotFoundError, naming the version needed, on a Python
    without concurrent.interpreters. For example::

        from gilstudy.kernels.work import KernelConsumer
        with subinterpreter(KernelConsumer, "count_primes", "python", results=collect) as worker:
            for index in range(100):
                worker.send((index, (0, 10_000)))
        # collect got (index, 1229) for every index
    """
    _require("subinterpreter")
    check_factory(factory, "subinterpreter",
                  "a subinterpreter (it has a __main__ of its own)")
    options = wire.channel_options("subinterpreter", max_frame, allowed)
    _checks.results("subinterpreter", results)
    setup = setup_payload(factory, args, max_frame, "subinterpreter")
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
    channel = wire.Channel.from_fds(replies_near.detach(), items_near.detach(), **options)
    # The child's entry speaks the pipe transport: one descriptor to read, one to write.
    argv = ("pipe", str(max_frame), "-", str(items_far.detach()), str(replies_far.detach()))
    flags = wire.WANT_RESULTS if results is not None else 0
    return open_link(channel, InterpreterPeer(argv, replies_handle), setup, flags,
                     results=results, where="socket pair")


def subinterpreters(factory: Callable, n: int, *args: Any, results: Any = None,
                    max_frame: int = wire.MAX_FRAME, allowed=None):
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
    _require("subinterpreters")
    return start_runners(lambda index: subinterpreter(factory, *args, results=results,
                                                      max_frame=max_frame, allowed=allowed),
                         n, owner="subinterpreters")
