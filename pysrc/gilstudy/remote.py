"""The near side of a framed channel: RemoteConsumer, the consumer that stands for one
running on the far side (gilstudy.farside). The machinery behind it is gilstudy.link (a
batch that send() fills and a flusher thread writes, gilstudy.batching; a reader thread
that takes acknowledgements, results and errors, gilstudy.replies; under the flow control
of gilstudy.flow). Whatever runs the far side (a spawned process, a server's connection, a
later kind of worker) stands behind it as a Peer: is it alive, how did it end, stop it.
"""

import os
import weakref
from typing import Any, Callable, Protocol, runtime_checkable

from gilstudy import _checks, wire
from gilstudy._exit_rule import ExitRule
from gilstudy._waits import interrupts_held
from gilstudy.batching import FLUSH_INTERVAL
from gilstudy.flow import EXIT_TIMEOUT, MAX_IN_FLIGHT
from gilstudy.link import Link, Phase
from gilstudy.startup import Start

__all__ = ["Peer", "UnownedPeer", "RemoteConsumer", "open_remote", "FLUSH_INTERVAL",
           "EXIT_TIMEOUT", "MAX_IN_FLIGHT"]


@runtime_checkable
class Peer(Protocol):
    """What a RemoteConsumer needs from whatever runs the far-side loop for it: a spawned
    process (gilstudy.processes), a server's connection (gilstudy.server), or another kind
    of worker. Four members, none of which may block for longer than it is told:

    ``name``: how messages name it ("coprocess 1234").
    ``pid``: its process id, or None when there is none to name.
    ``wait(timeout)``: its exit status once it has ended (an exit code, or -N for signal
    N), waiting up to ``timeout`` seconds; None when it is still running then, or when its
    end cannot be known from here.
    ``stop(force)``: end it, after its channel's writing side was closed: with ``force`` at
    once, else giving it EXIT_TIMEOUT to finish on its own; either way killed if it does
    not. Returns True when it is known to have ended, False when only closing the channel
    can end this side of it (a server's connection).
    """

    name: str
    pid: int | None

    def wait(self, timeout: float) -> int | None:
        """Its exit status once it has ended, waiting up to ``timeout`` seconds; None when it
        still runs then, or when its end cannot be known from here.
        """

    def stop(self, force: bool) -> bool:
        """End it, with ``force`` at once; True when it is known to have ended."""


class UnownedPeer:
    """The Peer of a worker this process does not own: a server's connection (the server's
    process is not ours) or a rank of the MPI job this process is rank 0 of (MPI gives no
    rank a way to end another or to see how it ended). Its end cannot be waited for or
    known from here, so ``wait()`` says None, and ``stop()`` leaves it to end once its
    channel is closed (False: only closing the channel ends this side of it). ``pid`` is
    the worker's, as its HELLO said."""

    def __init__(self, name: str, pid: int | None):
        self.name = name
        self.pid = pid

    def wait(self, timeout: float) -> int | None:
        return None

    def stop(self, force: bool) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<UnownedPeer {self.name}, pid {self.pid}>"


def open_remote(channel: wire.Channel, peer: "Peer | Callable[[wire.Hello], Peer]",
                start: Start, *, where: str, greet: bool = True,
                cleanups=()) -> "RemoteConsumer":
    """The near side's opening, the same for every runner kind: say HELLO on ``channel``
    (unless ``greet`` is false: a handshake said it already), send SETUP when ``start``
    (see gilstudy.startup.prepare) carries one, and return the RemoteConsumer that feeds
    the far side, with ``peer`` behind it. ``where`` names the channel in messages ("pipe",
    "MPI job"); each of ``cleanups`` is called once the worker has finished.

    ``peer`` is the Peer, or a callable that makes it from the far side's Hello (when the
    Peer needs its pid): the far side's HELLO is then read here, and what that raises
    (EOFError, OSError, ProtocolError) reaches the caller, who owns the channel still.
    Otherwise nothing here waits for the far side: the reader thread reads its HELLO, and a
    far side that ended at once leaves the writer broken, which the first send() or close()
    reports (WorkerDied)."""
    broken = False
    try:
        if greet:
            wire.send_hello(channel, os.getpid(), start.flags)
        if start.setup is not None:
            channel.write_frame(wire.SETUP, start.setup)
    except OSError:
        if not isinstance(peer, Peer):
            raise
        broken = True
    expect_hello = greet
    if not isinstance(peer, Peer):
        peer = peer(wire.read_hello(channel))
        expect_hello = False
    link = Link(channel, peer, results=start.results, where=where, expect_hello=expect_hello,
                cleanups=cleanups, max_in_flight=start.max_in_flight)
    if broken:
        link.break_writer()
    return RemoteConsumer(link)


class RemoteConsumer(ExitRule):
    """A consumer running on the far side of a framed channel, fed in batches: in another
    process (spawn(), coprocesses(), connect()), an MPI rank (gilstudy.mpi) or a
    subinterpreter (gilstudy.interpreters); open_remote() makes one.

    ``send(item)`` appends the item to a batch: nothing is pickled or written per item. A
    full batch (sized to make frames of about 64 KiB) is pickled and written by the send
    that fills it, and a flusher thread writes a partial batch no later than FLUSH_INTERVAL
    (5 ms) after its first item. Results (non-None values of the remote consumer's send()
    and close()) are passed to ``results.send`` from a reader thread, in order; a results
    consumer that also has ``extend`` (Collect has) gets each frame's results in one
    ``results.extend(values)`` call instead.

    Items are pickled when their batch is written, not by send(): do not change an item
    after sending it. To a spawned coprocess, numpy arrays of 1 MiB or more are copied
    once into shared memory (none for a gilstudy.shared_array) and the consumer gets an
    array over it (see gilstudy.shared); elsewhere, contiguous arrays (and anything else
    that pickles with protocol-5 out-of-band buffers) of 64 KiB or more travel beside the
    pickle, not copied into it, and arrive in fresh buffers of their own.

    Trouble: when the remote consumer raises, the next send() or close() raises
    RemoteError (a ConsumerError; the remote traceback is its ``__cause__``); when the
    worker dies or the connection drops, WorkerDied (exit code or signal); when a
    timeout given to send(), flush() or close() passes with no progress from the peer (no
    item acknowledged, no byte read), WorkerStalled (a TimeoutError); a consumer that is
    slow but keeps acknowledging never stalls. All three carry how many items were sent and
    how many the consumer acknowledged: the items after ``acknowledged`` are the ones to
    send again. close() raises such a failure only if no send() raised it before. An item
    that cannot be pickled, or that alone is larger than the frame limit, abandons the
    worker: send() or close() raises the pickling error (or ProtocolError), with a note
    naming the item. Leaving a ``with`` block on an exception aborts instead of closing
    (the rule of every runner).

    Flow control: at most ``max_in_flight`` items (65536 by default) are sent and not yet
    acknowledged; the send() that would exceed it waits for the consumer. Until a failure,
    a send() that returns has delivered its item (close() returns only once it is handled)
    and one that raises has not, even when another thread calls close() meanwhile. One
    producer thread at a time may call send().
    """

    def __init__(self, link: Link):
        self._link = link
        self._sender = link.sender
        self._batch = link.sender.batch
        self._flow = link.flow
        self._finalizer = weakref.finalize(self, link.abort)

    @property
    def pid(self) -> int | None:
        """The process running the consumer (for connect(): the server's process)."""
        return self._link.peer.pid

    @property
    def peer(self) -> Peer:
        """What runs the far side (see Peer)."""
        return self._link.peer

    @property
    def pending(self) -> int:
        """Items sent but not yet acknowledged as handled by the remote consumer."""
        # Read on every Dispatch.send, so written out rather than through the link's
        # properties.
        return self._sender.taken + len(self._batch) - self._flow.acknowledged

    @property
    def sent(self) -> int:
        """Items passed to send() so far."""
        return self._link.sent

    @property
    def acknowledged(self) -> int:
        """Items the remote consumer has acknowledged as handled."""
        return self._link.acknowledged

    @property
    def is_closed(self) -> bool:
        """Whether close() or abort() was called, or the channel failed."""
        return not self._link.is_open

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Queue ``item`` for the remote consumer; see the class docstring for failures.

        Most calls only append to the batch; the one that fills it writes it, and waits
        while the peer does not read or while ``max_in_flight`` items are unacknowledged.
        With ``timeout`` (seconds) such a wait ends with WorkerStalled once the peer has
        made no progress for that long; without, it lasts as long as the peer stalls. A
        send() that raises did not deliver its item."""
        # The hot path is an append and two comparisons; see Batcher.limit. A bad timeout
        # is refused at once, not when a later call happens to write the batch.
        if timeout is not None:
            _checks.timeout("send", timeout)
        batch = self._batch
        batch.append(item)
        if len(batch) >= self._sender.limit:
            self._sender.on_fill(item, timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write the items queued so far now, instead of within FLUSH_INTERVAL; ``timeout``
        as for send()."""
        timeout = _checks.timeout("flush", timeout)
        link = self._link
        if link.halted:
            link.refuse("flush()")
        link.sender.flush(link.flow.patience(timeout), "flush()")

    def close(self, timeout: float | None = None) -> None:
        """Wait until the remote consumer has handled every item sent, close it (its
        close() result arrives as a result), end the worker (kill it if it takes longer
        than EXIT_TIMEOUT to exit) and raise the failure if there was one that no send()
        raised. Idempotent: once it has returned, a second close() does nothing.

        With ``timeout`` (seconds), when the peer makes no progress for that long (reads
        nothing, acknowledges no item) before its consumer has closed, close() raises
        WorkerStalled and leaves the worker as it is; a later close() ends it (within
        EXIT_TIMEOUT, killing it if need be) and abort() ends it at once. Without, close()
        waits as long as the consumer works.

        Ctrl-C while it waits raises KeyboardInterrupt once the worker is ended; further
        Ctrl-Cs until then are absorbed, so nothing is left open however many arrive."""
        timeout = _checks.timeout("close", timeout)
        link = self._link
        with interrupts_held(first_raises=True, cleanup=link.abort):
            self._close_held(link, timeout)   # a call first: the guard covers its line

    def _close_held(self, link: Link, timeout: float | None) -> None:
        try:
            link.close(timeout)
        except BaseException as exc:
            if exc is not link.failure:
                # Interrupted (Ctrl-C) while waiting: end the worker now.
                link.abort()
            raise
        finally:
            if link.phase is Phase.FINISHED:
                self._finalizer.detach()

    def abort(self) -> None:
        """Drop the remote consumer now, unclosed: items not yet handled are lost, a spawned
        process is terminated (killed after EXIT_TIMEOUT), no failure is raised. Ctrl-C
        meanwhile raises KeyboardInterrupt only once all that is done."""
        with interrupts_held(first_raises=False):
            # Detached only once the guard holds interrupts: a Ctrl-C before it leaves the
            # finalizer to end the worker.
            self._finalizer.detach()
            self._link.abort()

    def __reduce__(self):
        raise TypeError("a RemoteConsumer cannot be pickled: it owns a live channel")

    def __repr__(self) -> str:
        link = self._link
        state = "open" if link.is_open else "closed"
        return (f"<RemoteConsumer {link.peer.name} over {link.where}, {state}, "
                f"{link.sent} sent, {link.acknowledged} acknowledged>")
