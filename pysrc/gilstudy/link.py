"""The machinery behind a RemoteConsumer (gilstudy.remote): one framed channel, the Peer
that runs its far side, and the state its two halves share. The halves are a Batcher
(gilstudy.batching: the batch and the flusher thread) and a ReplyReader
(gilstudy.replies: the reader thread); flow control is gilstudy.flow's. This module holds
what is left: the phase, the first failure and how it is raised, and the ending (close,
abort). The threads hold only the link, so a forgotten RemoteConsumer can still be
garbage-collected and its worker ended.
"""

import enum
import threading

from gilstudy import wire
from gilstudy.batching import Batcher
from gilstudy.errors import WorkerDied, WorkerStalled, RemoteError
from gilstudy.flow import EXIT_TIMEOUT, MAX_IN_FLIGHT, POLL, FlowControl, Patience
from gilstudy.replies import ReplyReader

__all__ = ["Link", "Phase"]


class Phase(enum.Enum):
    OPEN = "open"            # send() accepts items
    CLOSED = "closed"        # close() or abort() began: send() refuses, the flusher stops
    FINISHED = "finished"    # the peer ended, both threads joined, the channel closed


class Link:
    """The sending end of one framed channel.

    State: ``phase`` (see Phase); ``failure``, the first error to raise to the caller (the
    peer's error, its death, a stall, an unpicklable item), and whether it was raised;
    ``writer_broken``, a write failed (the reader will see why). ``halted`` (send() must
    refuse) follows from them. ``flow`` (see gilstudy.flow) holds the acknowledged count,
    the bound on items in flight and when the peer last made progress; every wait asks it.
    ``sender`` is the Batcher, ``reader`` the ReplyReader.
    """

    def __init__(self, channel: wire.Channel, peer, *, results=None, where: str,
                 expect_hello: bool, cleanups=(), max_in_flight: int = MAX_IN_FLIGHT):
        self.channel = channel
        self.peer = peer
        self.where = where
        self.cleanups = list(cleanups)
        self.phase = Phase.OPEN
        self.failure: BaseException | None = None
        self.failure_raised = False
        self.writer_broken = False
        self.flow = FlowControl(max_in_flight)
        self.state_lock = threading.Lock()
        label = f"gilstudy-worker-{peer.pid if peer.pid is not None else where}"
        self.sender = Batcher(self, max_in_flight, label)
        self.reader = ReplyReader(self, results, expect_hello, label)
        self.reader.thread.start()
        self.sender.thread.start()

    @property
    def sent(self) -> int:
        return self.sender.sent

    @property
    def acknowledged(self) -> int:
        return self.flow.acknowledged

    @property
    def is_open(self) -> bool:
        return self.phase is Phase.OPEN

    @property
    def halted(self) -> bool:
        return (self.phase is not Phase.OPEN or self.failure is not None
                or self.writer_broken)

    def cannot_write(self) -> bool:
        return self.failure is not None or self.writer_broken

    # Failures -------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` as the failure, unless one was recorded first. A results consumer
        with a ``fail(exc)`` method (Collect has one) is told at once, so a caller waiting
        for results raises instead of waiting for ever."""
        with self.state_lock:
            first = self.failure is None
            if first:
                self.failure = exc
            self.sender.limit = 0
        self.flow.wake()
        tell = getattr(self.reader.results, "fail", None)
        if first and callable(tell):
            try:
                tell(exc)
            except Exception:
                pass  # the caller still gets the failure from send() or close()

    def break_writer(self) -> None:
        """A write failed: the peer is gone; the reader will say how."""
        with self.state_lock:
            self.writer_broken = True
            self.sender.limit = 0
        self.flow.wake()

    def raise_failure(self):
        exc = self.failure
        self.failure_raised = True
        if isinstance(exc, (RemoteError, WorkerDied, WorkerStalled)):
            # Facts of this moment; the traceback of an earlier raise would only mislead.
            exc._set_counts(self.sent, self.acknowledged)
            raise exc.with_traceback(None)
        raise exc

    def stall(self, caller: str, patience: Patience,
              what: str = "no item acknowledged and no byte read"):
        """``caller``'s patience ran out: the peer made no progress for its timeout
        (``what`` says which). Record and raise WorkerStalled (or the failure recorded
        first)."""
        self.fail(WorkerStalled(self.peer.pid, f"{caller} saw no progress for "
                                                  f"{patience.timeout:g} s: {what}",
                                   where=self.peer.name))
        self.raise_failure()

    def died(self, exitcode: int | None, detail: str) -> WorkerDied:
        return WorkerDied(self.peer.pid, exitcode, detail, where=self.peer.name)

    def refuse(self, call: str = "send()"):
        """The link halted: raise why."""
        if self.failure is None and self.writer_broken:
            # A write failed and the reader has not yet said why: it sees the EOF next.
            if not self.reader.is_current():
                self.reader.done.wait(EXIT_TIMEOUT + 1)
            self.fail(self.died(self.peer.wait(0), f"its {self.where} broke"))
        if self.failure is not None:
            self.raise_failure()
        raise ValueError(f"{call} on a closed {self.peer.name}")

    # Ending ---------------------------------------------------------------------------

    def _begin_closing(self) -> bool:
        """Refuse sends from now on and release the flusher; True the first time only."""
        with self.state_lock:
            if self.phase is not Phase.OPEN:
                return False
            self.phase = Phase.CLOSED
            self.sender.limit = 0
        self.sender.wake.set()
        self.flow.wake()
        return True

    def close(self, timeout: float | None = None) -> None:
        if self.phase is Phase.FINISHED:
            return
        patience = self.flow.patience(timeout)
        if self._begin_closing() and self.failure is None:
            self._say_close(patience)
        if self.failure is None and not self.writer_broken:
            # The consumer handles what is left, closes, says DONE.
            while not self.reader.done.wait(POLL):
                if patience.stalled():
                    self.stall("close()", patience, "its consumer acknowledged no item and "
                                                    "did not finish closing")
        self._finish(force=False)
        if self.failure is None and not self.reader.peer_done:
            self.fail(self.died(self.peer.wait(0),
                                f"its {self.where} closed before the consumer was closed"))
        if self.failure is not None and not self.failure_raised:
            self.raise_failure()

    def _say_close(self, patience: Patience) -> None:
        """Write what is left of the batch and CLOSE, then close the writing side."""
        sender = self.sender
        sender.flush(patience, "close()")
        sender.lock_writes(patience, "close()")
        try:
            if not self.cannot_write():
                try:
                    self.channel.write_frame(wire.CLOSE, patience=patience)
                except TimeoutError:
                    self.stall("close()", patience)
                except OSError:
                    self.writer_broken = True
            self.channel.close_writer()
        finally:
            sender.write_lock.release()

    def abort(self) -> None:
        if self.phase is Phase.FINISHED:
            return
        self._begin_closing()
        self._finish(force=True)

    def _finish(self, force: bool) -> None:
        """End the peer (politely unless ``force``), wait for both threads, close the
        channel and remove what the transport left behind. Every step may run twice, so
        abort() can finish what an interrupted close() began.

        The threads are waited for on their Gates rather than with Thread.join() alone: on
        3.11 and 3.12 a join interrupted by Ctrl-C marks the thread stopped while it still
        runs (bpo-45274), so a later join would not wait for it."""
        sender, reader = self.sender, self.reader
        sender.wake.set()  # the flusher leaves: the phase is no longer OPEN
        if force or self.failure is not None:
            # A write waiting for a peer that no longer reads gives up (within 50 ms).
            self.channel.cancel_writes()
        in_flusher = threading.current_thread() is sender.thread
        if not in_flusher:
            # A writer cancelled above lets go within 50 ms. A lock still held after
            # EXIT_TIMEOUT was left taken by a Ctrl-C that landed between an acquire and
            # its try: close the writer anyway rather than wait for ever.
            has_lock = sender.write_lock.acquire(timeout=EXIT_TIMEOUT)
            try:
                # The peer reads EOF: one that waits for it (after an error) ends.
                self.channel.close_writer()
            finally:
                if has_lock:
                    sender.write_lock.release()
        if not self.peer.stop(force) or force:
            # Wakes a reader or writer blocked on a socket; pipes broke with the process.
            self.channel.shutdown()
        if not in_flusher:
            sender.done.wait()
            sender.thread.join()
        if not reader.is_current():
            reader.done.wait()
            reader.thread.join()
            self.channel.close()
            # Results are all delivered: the link lets go of them (and of the shared
            # memory that arrays among them lie over).
            reader.results = None
        else:
            # Garbage collection ran the finalizer in the reader thread itself: the reader
            # closes the channel on its way out.
            reader.closes_channel = True
        for cleanup in self.cleanups:
            cleanup()
        self.phase = Phase.FINISHED
