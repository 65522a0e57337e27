"""Every exception gilstudy defines, in one place. Each subclasses the nearest built-in
exception, so callers who catch the built-in catch ours too; each carries the facts a
caller needs to act (which kernel, which worker, how many items got through). Errors of
workers form one family: a consumer that raised is a ConsumerError wherever it ran, and
the worker's own traceback is the __cause__, so a plain traceback print shows both sides.
"""

__all__ = [
    "GilstudyError",
    "UnknownKernelError",
    "ConsumerError",
    "RemoteError",
    "RemoteTraceback",
    "WorkerDied",
    "WorkerStalled",
    "CoprocessDied",
    "CoprocessStalled",
    "ProtocolError",
    "AuthenticationError",
    "PeerGone",
    "RunnerUnavailable",
    "MpiUnavailable",
    "SubinterpretersUnavailable",
    "CompareError",
    "ModelFailed",
    "WrongAnswer",
    "PythonExecutableFailed",
    "InterpreterFailed",
    "BrokenWorkerPool",
]


class GilstudyError(Exception):
    """Base of gilstudy's own failures (not of bad arguments, which get built-in errors)."""


class UnknownKernelError(GilstudyError, LookupError):
    """A kernel name or implementation that gilstudy does not have; the message lists the
    valid choices."""


class _DeliveryCounts:
    """Mixin: how many items the caller sent and how many the worker acknowledged, so the
    caller knows exactly which items to send again (those after ``acknowledged``)."""

    sent: int | None = None
    acknowledged: int | None = None

    def _set_counts(self, sent: int | None, acknowledged: int | None) -> None:
        self.sent = sent
        self.acknowledged = acknowledged

    def _counts_text(self) -> str:
        if self.sent is None:
            return ""
        return f" ({self.sent} items sent, {self.acknowledged} acknowledged)"


class ConsumerError(_DeliveryCounts, GilstudyError, RuntimeError):
    """A consumer raised, wherever it ran: in a worker thread (this class), or in another
    process, interpreter or rank (RemoteError, a subclass). Raised in the caller by the next
    ``send`` or by ``close``; the consumer's own exception, or for a remote one its
    traceback, is the ``__cause__``."""

    def __init__(self, message: str, sent: int | None = None, acknowledged: int | None = None):
        super().__init__(message)
        self._set_counts(sent, acknowledged)

    def __reduce__(self):
        return (type(self), (self.args[0], self.sent, self.acknowledged))


class RemoteTraceback(Exception):
    """The traceback of an exception raised on the far side of a channel, as text. A
    RemoteError carries it as its ``__cause__``, so printing the RemoteError's traceback
    shows where the consumer failed over there, then "The above exception was the direct
    cause of the following exception", then where the caller saw it (the habit of
    concurrent.futures and loky)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


class RemoteError(ConsumerError):
    """A consumer running outside this interpreter (a coprocess, a server's connection, and
    whatever runs the far-side loop) raised. ``remote_type`` is the name of the exception's
    class there, ``remote_message`` its message, ``remote_traceback`` its formatted
    traceback, also attached as the ``__cause__`` (a RemoteTraceback); ``where`` names the
    worker ("coprocess 1234")."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "",
                 sent: int | None = None, acknowledged: int | None = None,
                 where: str | None = None):
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self.where = where
        super().__init__(f"{remote_type}: {message}", sent, acknowledged)
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)

    def __str__(self) -> str:
        text = f"{self.remote_type}: {self.remote_message}{self._counts_text()}"
        return f"{self.where}: {text}" if self.where else text

    def __reduce__(self):
        return (type(self), (self.remote_type, self.remote_message, self.remote_traceback,
                             self.sent, self.acknowledged, self.where))


class WorkerDied(_DeliveryCounts, GilstudyError, ChildProcessError):
    """A worker outside this interpreter (a coprocess, a server's connection, an MPI rank,
    a subinterpreter) ended before it was closed: killed, crashed, exited early, or its
    connection dropped. ``CoprocessDied`` is the same class, its older name.

    ``exitcode`` is its exit status, or ``-N`` when signal N ended it (``signal`` is then
    N); None when unknown. ``where`` names it ("coprocess 1234", "MPI rank 2",
    "subinterpreter 1"; "worker PID" when not given).
    """

    def __init__(self, pid: int | None, exitcode: int | None, detail: str = "",
                 sent: int | None = None, acknowledged: int | None = None,
                 where: str | None = None):
        self.pid = pid
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        self.detail = detail
        self.where = where
        self._set_counts(sent, acknowledged)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.signal is not None:
            how = f"was killed by signal {self.signal}"
        elif self.exitcode is None:
            how = "stopped answering"
        else:
            how = f"exited with code {self.exitcode}"
        who = self.where or f"worker {self.pid}"
        text = f"{who} {how}{self._counts_text()}"
        return f"{text}: {self.detail}" if self.detail else text

    def __reduce__(self):
        return (type(self), (self.pid, self.exitcode, self.detail, self.sent, self.acknowledged,
                             self.where))


class WorkerStalled(_DeliveryCounts, GilstudyError, TimeoutError):
    """A worker outside this interpreter did not keep up within the timeout given to
    ``send``, ``flush`` or ``close``: it stopped reading, or its consumer did not finish in
    time. ``CoprocessStalled`` is the same class, its older name.

    The worker is left as it was, its consumer unclosed, and every later ``send`` raises
    this again: ``abort()`` ends it at once, ``close()`` within EXIT_TIMEOUT. ``detail``
    says which call waited for what.
    """

    def __init__(self, pid: int | None, detail: str, sent: int | None = None,
                 acknowledged: int | None = None, where: str | None = None):
        self.pid = pid
        self.detail = detail
        self.where = where
        self._set_counts(sent, acknowledged)
        super().__init__(str(self))

    def __str__(self) -> str:
        who = self.where or f"worker {self.pid}"
        return f"{who} stalled{self._counts_text()}: {self.detail}"

    def __reduce__(self):
        return (type(self), (self.pid, self.detail, self.sent, self.acknowledged, self.where))


# The older names, kept: the same classes, so either name catches both.
CoprocessDied = WorkerDied
CoprocessStalled = WorkerStalled


class ProtocolError(GilstudyError, ValueError):
    """A message on a channel broke the wire protocol (truncated, oversized, or refused by
    restricted unpickling); the channel is closed, the process goes on."""


class AuthenticationError(GilstudyError, PermissionError):
    """The peer on a socket channel did not prove that it knows the shared key (or one
    end has a key and the other none); the connection was closed before anything from the
    peer was unpickled."""


class PeerGone(GilstudyError, ConnectionError):
    """Internal: the far side of a channel could not write to the sender any more (it
    closed the channel or died). Nobody is left to tell, so the far-side loop just stops;
    it never reaches a caller of the public API."""


class RunnerUnavailable(GilstudyError, ImportError):
    """A kind of runner cannot run here: what it needs (a library, a program, a Python
    version) is missing. The rule of every runner kind whose support may be missing: its
    starters raise a subclass of this, before anything starts, and the message says what
    is missing and how to get it."""


class MpiUnavailable(RunnerUnavailable):
    """gilstudy.mpi cannot run here: mpi4py, or an mpiexec to start ranks with, is missing.
    The message says which, and that ``pip install 'gilstudy[mpi]'`` brings both."""


class SubinterpretersUnavailable(RunnerUnavailable, ModuleNotFoundError):
    """Subinterpreters cannot run here: this Python has no concurrent.interpreters (it
    came with 3.14). The message names the version needed. A ModuleNotFoundError too, as
    it was before it had a name of its own."""


class CompareError(GilstudyError, RuntimeError):
    """A measurement could not finish: `gilstudy compare`, or an experiment run under
    another interpreter. ``subject`` names what failed: a model as the report names it
    (``threads-python@3.13t``), or an interpreter's path. The three subclasses say how."""

    def __init__(self, message: str, subject: str | None = None):
        super().__init__(message)
        self.subject = subject

    def __reduce__(self):
        return (type(self), (self.args[0], self.subject))


class ModelFailed(CompareError):
    """A model's workers failed to start, to run the workload or to stop; the worker's own
    error is the ``__cause__``."""


class WrongAnswer(CompareError):
    """A model computed an answer different from the reference model's: a bug, never a row
    of the table."""


class PythonExecutableFailed(CompareError):
    """Another Python executable (``--python``, a child process that measures under it)
    could not be started, died, stopped answering or broke the protocol between the two.
    Not a subinterpreter's failure: a subinterpreter is a worker (WorkerDied).
    ``InterpreterFailed`` is the same class, its older name."""


InterpreterFailed = PythonExecutableFailed


# BrokenWorkerPool subclasses concurrent.futures.BrokenExecutor, whose module imports logging
# (14 ms): made on first use, so that a coprocess, which imports this module, starts fast.
def _broken_worker_pool():
    from concurrent.futures import BrokenExecutor

    class BrokenWorkerPool(GilstudyError, BrokenExecutor):
        """A worker of a :class:`gilstudy.Executor` died (killed, crashed, exited) or broke
        the protocol, so the executor is broken: every call not yet finished failed with
        this error, and submit() raises it. ``worker`` names the worker ("coprocess 1234",
        "MPI rank 2"), ``exitcode`` and ``signal`` say how it ended (None when unknown);
        the worker's own error (a CoprocessDied, say) is the ``__cause__``."""

        def __init__(self, message: str, worker: str | None = None,
                     exitcode: int | None = None):
            super().__init__(message)
            self.worker = worker
            self.exitcode = exitcode
            self.signal = -exitcode if exitcode is not None and exitcode < 0 else None

        def __reduce__(self):
            return (type(self), (self.args[0], self.worker, self.exitcode))

    BrokenWorkerPool.__module__ = __name__
    BrokenWorkerPool.__qualname__ = "BrokenWorkerPool"
    return BrokenWorkerPool


def __getattr__(name: str):
    if name == "BrokenWorkerPool":
        value = globals()[name] = _broken_worker_pool()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
