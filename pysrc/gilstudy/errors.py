# Every exception gilstudy defines, in one place. Each subclasses the nearest built-in
# exception, so callers who catch the built-in catch ours too; each carries the facts a
# caller needs to act (which kernel, which process, how many items got through).

__all__ = [
    "GilstudyError",
    "UnknownKernelError",
    "ConsumerError",
    "RemoteError",
    "CoprocessDied",
    "CoprocessStalled",
    "ProtocolError",
    "AuthenticationError",
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
    """A consumer running in a worker thread raised; the original exception is the
    ``__cause__``. Raised in the caller by the next ``send`` or by ``close``."""

    def __init__(self, message: str, sent: int | None = None, acknowledged: int | None = None):
        super().__init__(message)
        self._set_counts(sent, acknowledged)

    def __reduce__(self):
        return (type(self), (self.args[0], self.sent, self.acknowledged))


class RemoteError(_DeliveryCounts, GilstudyError, RuntimeError):
    """A consumer running in another process raised. ``remote_type`` is the name of the
    exception's class there and ``remote_traceback`` its formatted traceback."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "",
                 sent: int | None = None, acknowledged: int | None = None):
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self._set_counts(sent, acknowledged)

    def __str__(self) -> str:
        text = f"{self.remote_type}: {self.remote_message}{self._counts_text()}"
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text

    def __reduce__(self):
        return (type(self), (self.remote_type, self.remote_message, self.remote_traceback,
                             self.sent, self.acknowledged))


class CoprocessDied(_DeliveryCounts, GilstudyError, ChildProcessError):
    """A coprocess ended before it was closed (killed, crashed, exited early).

    ``exitcode`` is its exit status, or ``-N`` when signal N ended it (``signal`` is then N).
    """

    def __init__(self, pid: int | None, exitcode: int | None, detail: str = "",
                 sent: int | None = None, acknowledged: int | None = None):
        self.pid = pid
        self.exitcode = exitcode
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        self.detail = detail
        self._set_counts(sent, acknowledged)
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.signal is not None:
            how = f"was killed by signal {self.signal}"
        elif self.exitcode is None:
            how = "stopped answering"
        else:
            how = f"exited with code {self.exitcode}"
        text = f"coprocess {self.pid} {how}{self._counts_text()}"
        return f"{text}: {self.detail}" if self.detail else text

    def __reduce__(self):
        return (type(self), (self.pid, self.exitcode, self.detail, self.sent, self.acknowledged))


class CoprocessStalled(_DeliveryCounts, GilstudyError, TimeoutError):
    """A coprocess did not keep up within the timeout given to ``send``, ``flush`` or
    ``close``: it stopped reading, or its consumer did not finish in time.

    The coprocess is left as it was, its consumer unclosed, and every later ``send`` raises
    this again: ``abort()`` ends the coprocess at once, ``close()`` within EXIT_TIMEOUT.
    ``detail`` says which call waited for what.
    """

    def __init__(self, pid: int | None, detail: str, sent: int | None = None,
                 acknowledged: int | None = None):
        self.pid = pid
        self.detail = detail
        self._set_counts(sent, acknowledged)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"coprocess {self.pid} stalled{self._counts_text()}: {self.detail}"

    def __reduce__(self):
        return (type(self), (self.pid, self.detail, self.sent, self.acknowledged))


class ProtocolError(GilstudyError, ValueError):
    """A message on a coprocess channel broke the wire protocol (truncated, oversized, or
    refused by restricted unpickling); the channel is closed, the process goes on."""


class AuthenticationError(GilstudyError, PermissionError):
    """The peer on a socket channel did not prove that it knows the shared key (or one
    end has a key and the other none); the connection was closed before anything from the
    peer was unpickled."""
