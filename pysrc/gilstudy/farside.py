"""The far side of every framed channel: the loop that builds a consumer, feeds it the items
the sender writes, and answers with results, acknowledgements and the error with its
traceback. It takes a channel and a factory and nothing else (no process, pid or argv),
so whatever can carry frames can run it: a spawned coprocess, a server's connection, and
any later kind of worker. It imports only what that needs, so a coprocess starts fast.
"""

import os
import sys
import time
from typing import Any, Callable, Protocol

from gilstudy import wire
from gilstudy.errors import AuthenticationError, PeerGone, ProtocolError
from gilstudy.startup import build_from_setup

__all__ = ["FarChannel", "run_far_side", "serve_channel", "serve_as_worker"]


class FarChannel(Protocol):
    """What run_far_side() needs of a channel (gilstudy.wire.Channel has it; another
    carrier of frames implements these four members):

    ``read_frame()`` returns the next ``(kind, payload)`` sent by the sender, raising
    EOFError when it closed the channel and ProtocolError for a broken frame;
    ``load(payload)`` unpickles an ITEMS payload (ProtocolError when it cannot);
    ``write_frames(frames)`` writes ``(kind, payload[, buffers])`` frames to the sender,
    raising OSError when it is gone; ``peer_max_frame`` is the longest frame the sender
    reads. A channel to a process on this host may also have ``shared`` (a
    gilstudy.shared.SharedMemory): results that carry large arrays then go through it.
    """

    peer_max_frame: int

    def read_frame(self) -> tuple[int, Any]: ...

    def load(self, payload: Any) -> Any: ...

    def write_frames(self, frames: list) -> None: ...


# Items between two looks at the clock, at most; see run_far_side().
_MAX_STRIDE = 64


def _write(channel: FarChannel, frames) -> None:
    try:
        channel.write_frames(frames)
    except OSError as exc:
        raise PeerGone(str(exc)) from exc


def _reply(channel: FarChannel, results: list, handled: int, *last) -> None:
    """Send the results gathered so far and the count handled, then the frames in ``last``.
    A result that cannot be pickled, or alone makes a frame longer than the sender
    accepts, raises here, as the consumer's error; results too many for one frame go in
    several."""
    frames = []
    if results:
        try:
            dumped = wire.dumps_in_frames(results, channel.peer_max_frame,
                                          getattr(channel, "shared", None))
        except ConnectionError as exc:  # the side socket of shared memory broke
            raise PeerGone(str(exc)) from exc
        for payload, buffers in dumped:
            frames.append((wire.RESULTS, payload, buffers))
        results.clear()
    frames.append((wire.ACK, wire.ACK_BODY.pack(handled)))
    frames.extend(last)
    _write(channel, frames)


def _report(channel: FarChannel, results: list, handled: int, acknowledged: int,
            exc: Exception) -> None:
    """Send the results of the items handled before ``exc`` and the count handled, then the
    error; then wait for the sender to close. When those results cannot be sent (one does
    not pickle, or is too large), the count stays at ``acknowledged``, the last one sent: an
    item counts as handled only once its results are on their way."""
    error = (wire.ERROR, wire.encode_error(exc))
    try:
        _reply(channel, results, handled, error)
    except PeerGone:
        raise
    except Exception:
        results.clear()  # the error says why
        _reply(channel, results, acknowledged, error)
    _drain(channel)


def _drain(channel: FarChannel) -> None:
    """After an error: discard what the sender still writes until it closes the channel
    (or says CLOSE), so its writes never fail while it has not yet read the error."""
    while True:
        try:
            kind, _ = channel.read_frame()
        except (EOFError, OSError, ProtocolError):
            return
        if kind == wire.CLOSE:
            return


def run_far_side(channel: FarChannel, make_consumer: Callable[[], Any],
                 want_results: bool) -> bool:
    """Build a consumer with ``make_consumer()`` and feed it the items of every ITEMS frame
    read from ``channel``, in order, until CLOSE; then close it. Return True when the
    consumer was closed cleanly, False when it failed or the sender left without CLOSE.

    After each frame, and within wire.FLUSH_INTERVAL during a long one, it sends the results
    gathered (if ``want_results``) and the total handled (ACK). The clock is read after
    every item while items are slow; while they take microseconds, after every few (at most
    _MAX_STRIDE), so an abrupt change from fast to slow items can delay one ACK by the time
    of that many items. If the
    consumer (or make_consumer) raises, it sends the error (ERROR), handles nothing more and
    discards input until the sender closes; the consumer's close() is then not called. A
    sender that closes without CLOSE abandons the consumer the same way. Raises PeerGone
    when the sender cannot be written to, ProtocolError when it breaks the protocol: at
    once for a broken frame (too long, truncated, of an unknown kind), and after reporting
    and discarding as above for a whole frame that does not load (a refused global, a
    malformed pickle, an item whose unpickling raises).
    """
    handled = 0
    acknowledged = 0  # the count in the last ACK sent
    stride = 1
    results = []
    load = channel.load
    monotonic = time.monotonic
    try:
        consumer = make_consumer()
        send = consumer.send
        close = consumer.close
    except Exception as exc:
        _report(channel, results, handled, acknowledged, exc)
        return False
    while True:
        try:
            kind, payload = channel.read_frame()
        except EOFError:
            return False
        if kind != wire.ITEMS and kind != wire.CLOSE:
            raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame from the sender")
        if kind == wire.ITEMS:
            try:
                items = load(payload)
            except ProtocolError as exc:
                _report(channel, results, handled, acknowledged, exc)
                raise
        try:
            if kind == wire.ITEMS:
                last_check = monotonic()
                deadline = last_check + wire.FLUSH_INTERVAL
                next_check = handled + stride
                for item in items:
                    result = send(item)
                    handled += 1
                    if result is not None and want_results:
                        results.append(result)
                    if handled >= next_check:
                        # Reading the clock costs a quarter of a tiny item's time, so it is
                        # read every ``stride`` items: 1 while items are slow, doubling up to
                        # _MAX_STRIDE while a stride takes under an eighth of the interval.
                        now = monotonic()
                        if now >= deadline:
                            _reply(channel, results, handled)
                            acknowledged = handled
                            deadline = now + wire.FLUSH_INTERVAL
                        if now - last_check < wire.FLUSH_INTERVAL / 8:
                            stride = min(stride * 2, _MAX_STRIDE)
                        else:
                            stride = 1
                        last_check = now
                        next_check = handled + stride
                # Arrays over shared memory are released once the consumer lets them go,
                # not when the next frame replaces these names; so is the buffer an array
                # was read into (a large array is not kept while the next frame is read).
                items = item = result = payload = None
                _reply(channel, results, handled)
                acknowledged = handled
            else:
                result = close()
                if result is not None and want_results:
                    results.append(result)
                _reply(channel, results, handled, (wire.DONE, b""))
                return True
        except PeerGone:
            raise
        except Exception as exc:
            _report(channel, results, handled, acknowledged, exc)
            return False


def serve_channel(channel: FarChannel, *, factory: Callable[[], Any] | None = None,
                  hello: wire.Hello | None = None, authkey: bytes | None = None,
                  accepting: bool = False) -> bool:
    """The one far-side entry, from a channel to a far side that has run to its end: the
    handshake (unless ``hello``, the near side's Hello, says that it happened already, as
    a server's admission does it), with ``authkey`` when the channel is a socket and
    ``accepting`` for the end that accepted the connection; then the consumer, built by
    ``factory()`` when given (a server has its own), else from the SETUP frame the near
    side sends (gilstudy.startup.build_from_setup); then run_far_side(), whose answer it
    returns. Every runner kind calls it: the spawned child, each server connection, each
    MPI rank, each subinterpreter.

    Raises AuthenticationError or ProtocolError when the near side fails the handshake or
    breaks the protocol, PeerGone, EOFError or OSError when it went away."""
    if hello is None:
        hello = wire.handshake(channel, pid=os.getpid(), authkey=authkey, accepting=accepting)
    make_consumer = factory if factory is not None else (lambda: build_from_setup(channel))
    return run_far_side(channel, make_consumer,
                        want_results=bool(hello.flags & wire.WANT_RESULTS))


def serve_as_worker(channel: FarChannel, name: str, **how) -> int:
    """``serve_channel(channel, **how)`` for a worker that ends when its far side does (a
    spawned process, a subinterpreter); return its exit status. 0 when the far side ran to
    its end, and when the near side went away (nobody is left to report to); 2, after a
    line on stderr naming the worker (``name``), when the near side failed the handshake
    or broke the protocol. Closes the channel."""
    try:
        serve_channel(channel, **how)
    except (AuthenticationError, ProtocolError) as exc:
        print(f"gilstudy {name}: {exc}", file=sys.stderr)
        return 2
    except (PeerGone, EOFError, OSError):
        return 0
    finally:
        channel.close()
    return 0
