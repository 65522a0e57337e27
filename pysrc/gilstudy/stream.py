"""The plain protocol: a bare stream of standard pickles, ended by EOF, that any
pickle.dump / pickle.load loop speaks, in any Python that has pickle. CoprocessSender
writes it, Coprocess reads it; nothing comes back. (gilstudy's own ends speak the framed
protocol instead: gilstudy.wire, gilstudy.remote.)
"""

import pickle
from typing import Any, BinaryIO

from gilstudy import _checks, wire
from gilstudy._exit_rule import ExitRule
from gilstudy.errors import ProtocolError

__all__ = ["CoprocessSender", "Coprocess"]

_TRUNCATED = "the stream was truncated: it ended inside a pickle"

# What abort() writes last: a PROTO opcode without its argument, so that every unpickler
# sees a truncated pickle (the C one an UnpicklingError, the Python one an IndexError), never
# the clean EOFError of a finished stream.
_CUT = b"\x80"


class CoprocessSender(ExitRule):
    """Send items to a consumer in another process over the binary stream ``stream``.

    Each ``send(item)`` writes one standard pickle (``pickle.dump(item, stream,
    protocol)``); ``close()`` flushes and closes the stream, which the reading end sees as
    EOF. Anything that loads pickles one by one from a stream can read it, a Coprocess in
    particular. ``protocol`` is pickle's default unless given: an older reader needs an
    older protocol (2 for a loop still running under Python 2, 4 before Python 3.8).
    Nothing comes back: no results, no errors. A reader that died shows up as
    BrokenPipeError from a later send or from close.

    Leaving a ``with`` block normally closes it; leaving it because the block raised
    aborts it (the rule of every runner): abort() ends the stream inside a pickle, so the
    reader sees a truncated stream (a Coprocess raises ProtocolError and leaves its
    consumer unclosed; a plain ``pickle.load`` loop gets an UnpicklingError), never a
    finished one.

    Raises TypeError or ValueError when ``protocol`` is not an int from 0 to
    pickle.HIGHEST_PROTOCOL.

    >>> import io
    >>> sink = io.BytesIO()
    >>> sender = CoprocessSender(sink)
    >>> sender.send((1, "one"))
    >>> pickle.loads(sink.getvalue())
    (1, 'one')
    """

    def __init__(self, stream: BinaryIO, protocol: int | None = None):
        if protocol is None:
            protocol = pickle.DEFAULT_PROTOCOL
        _checks.integer("CoprocessSender", "protocol", protocol, maximum=None)
        if protocol > pickle.HIGHEST_PROTOCOL:
            raise ValueError(f"CoprocessSender: protocol must be <= {pickle.HIGHEST_PROTOCOL} "
                             f"(pickle.HIGHEST_PROTOCOL here), got {protocol}")
        self._protocol = protocol
        self._stream = stream

    @property
    def protocol(self) -> int:
        """The pickle protocol the items are written with."""
        return self._protocol

    def send(self, item: Any, _dump=pickle.dump) -> None:
        """Write ``item`` to the stream as one pickle (``pickle.dump``)."""
        # pickle.dump bound as a default argument: the per-item cost stays within ~15% of a
        # bare pickle.dump loop (bench/bench_coprocess.py measures it).
        _dump(item, self._stream, self._protocol)

    def close(self) -> None:
        """Flush and close the stream; idempotent."""
        if not self._stream.closed:
            self._stream.close()

    def abort(self) -> None:
        """End the stream inside a pickle and close it, so the reader cannot mistake it for
        a finished one; a reader already gone is no error. Idempotent; never raises."""
        stream = self._stream
        if stream.closed:
            return
        try:
            stream.write(_CUT)
        except (OSError, ValueError):
            pass  # the reader is gone: it sees no finished stream either
        try:
            stream.close()
        except (OSError, ValueError):
            pass


class Coprocess:
    """Run ``consumer`` on every pickle read from the binary stream ``stream``.

    ``run()`` loads pickles until EOF, sends each object to the consumer in order, then
    closes the consumer; results (non-None values of send() and close()) go to
    ``results.send`` when ``results`` is given. A stream that ends in the middle of a pickle
    raises ProtocolError saying it was truncated, with or without ``allowed`` (the consumer
    is then not closed); an exception from the consumer
    propagates from run(). This is the reading end of the plain protocol: a CoprocessSender,
    or any loop of ``pickle.dump(item, stream)``, can feed it, e.g. through standard input:

        Coprocess(sys.stdin.buffer, Countdown()).run()

    A pickle runs whatever code its writer chose. With ``allowed`` (a set of
    ``"module.qualname"`` strings or a callable(module, qualname) -> bool, see
    gilstudy.wire.RestrictedUnpickler) only the globals it permits load; any other raises
    ProtocolError naming it. The plain protocol has no frames, so no size limit: feed it
    only from a writer you trust not to send endless data.
    """

    def __init__(self, stream: BinaryIO, consumer: Any, results: Any = None, *,
                 allowed=None):
        self._stream = stream
        self._consumer = consumer
        self._results = results
        # Checked now, not at the first pickle.
        self._allowed = None if allowed is None else wire.permits(allowed)

    def run(self) -> None:
        """Load pickles until EOF, send each to the consumer, then close it.

        Raises
        ------
        gilstudy.ProtocolError
            When the stream ends inside a pickle (the consumer is then not closed), or a
            pickle names a global that ``allowed`` does not permit.
        """
        stream = self._stream
        if self._allowed is None:
            load = pickle.Unpickler(stream).load
        else:
            load = wire.RestrictedUnpickler(stream, allowed=self._allowed).load
        send = self._consumer.send
        forward = self._results.send if self._results is not None else None
        # peek() tells a clean EOF between pickles from a truncated one; a stream without
        # it (unbuffered) ends at the first EOFError.
        peek = getattr(stream, "peek", None)
        while True:
            if peek is not None and not peek(1):
                break
            try:
                item = load()
            except EOFError:
                if peek is not None:
                    raise ProtocolError(_TRUNCATED) from None
                break
            except ProtocolError:
                raise  # a global refused by ``allowed``
            except Exception as exc:
                # Cut short, each unpickler fails its own way (the C one says "truncated",
                # the pure-Python one behind ``allowed`` an IndexError or a struct.error):
                # at the end of the stream, all of them mean the same.
                if peek is not None and not peek(1):
                    raise ProtocolError(_TRUNCATED) from exc
                raise ProtocolError(f"unreadable pickle in the stream: {type(exc).__name__}: "
                                    f"{exc}") from exc
            result = send(item)
            if result is not None and forward is not None:
                forward(result)
        result = self._consumer.close()
        if result is not None and forward is not None:
            forward(result)
