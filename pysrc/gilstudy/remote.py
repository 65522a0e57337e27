"""The near side of a framed channel: RemoteConsumer, the consumer that stands for one
running on the far side (gilstudy.farside), and the machinery behind it: a batch that
send() fills and a flusher thread writes, and a reader thread that takes acknowledgements,
results and errors, under the flow control of gilstudy.flow. Whatever runs the far side (a
spawned process, a server's connection, a later kind of worker) stands behind it as a
Peer: is it alive, how did it end, stop it.
"""

import enum
import pickle
import threading
import time
import weakref
from typing import Any, Protocol

from gilstudy import _checks, wire
from gilstudy._exit_rule import ExitRule
from gilstudy._waits import Gate, interrupts_held
from gilstudy.errors import CoprocessDied, CoprocessStalled, ProtocolError, RemoteError
from gilstudy.flow import MAX_IN_FLIGHT, POLL, FlowControl, Patience
from gilstudy.shared import InFlight

__all__ = ["Peer", "RemoteConsumer", "FLUSH_INTERVAL", "EXIT_TIMEOUT", "MAX_IN_FLIGHT"]

FLUSH_INTERVAL = wire.FLUSH_INTERVAL

# How long a worker may take to exit once its channel has closed, in seconds, before it
# is killed; close() raises CoprocessDied for a dead one at the latest this long after the
# death, and usually within milliseconds.
EXIT_TIMEOUT = 5.0

# Batches start small and grow (at most 4x per frame) towards frames of about _FRAME_BYTES,
# so small items travel a few thousand to a frame and a large item travels alone at once.
_FIRST_BATCH = 64
_MAX_BATCH = 4096
_FRAME_BYTES = 1 << 16


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


class _Phase(enum.Enum):
    OPEN = "open"            # send() accepts items
    CLOSED = "closed"        # close() or abort() began: send() refuses, the flusher stops
    FINISHED = "finished"    # the peer ended, both threads joined, the channel closed


# What flush() is given in place of send()'s own item when it has none.
_NO_ITEM = object()


class _Link:
    """The sending end of one framed channel and its two threads: a reader that takes
    acknowledgements, results and errors from the peer, and a flusher that writes a batch
    no later than FLUSH_INTERVAL after its first item arrived. RemoteConsumer is its public
    face; the threads hold only this object, so a forgotten RemoteConsumer can still be
    garbage-collected and its worker ended.

    State: ``phase`` (see _Phase); ``failure``, the first error to raise to the caller (the
    peer's error, its death, a stall, an unpicklable item), and whether it was raised;
    ``writer_broken``, a write failed (the reader will see why); ``peer_done``, the peer
    said DONE. ``halted`` (send() must refuse) follows from them. ``flow`` (see
    gilstudy.flow) holds the acknowledged count, the bound on items in flight and when the
    peer last made progress; every wait below asks it.
    """

    def __init__(self, channel: wire.Channel, peer: Peer, *, results=None, where: str,
                 expect_hello: bool, cleanups=(), max_in_flight: int = MAX_IN_FLIGHT):
        self.channel = channel
        self.peer = peer
        self.results = results
        self.where = where
        self.cleanups = list(cleanups)
        self.phase = _Phase.OPEN
        self.failure: BaseException | None = None
        self.failure_raised = False
        self.writer_broken = False
        self.peer_done = False
        self.flow = FlowControl(max_in_flight)
        self.batch: list = []
        # Frames of at least four batches fit in the window, so the worker never waits.
        self.max_batch = max(1, min(_MAX_BATCH, max_in_flight // 4))
        self.batch_size = min(_FIRST_BATCH, self.max_batch)
        # send() appends, then takes the slow path (on_fill) when len(batch) >= limit:
        # the batch size, or less when the window has less room; 1 while the batch is
        # empty, so that the item that starts a batch wakes the flusher; 0 once halted.
        self.limit = 1
        self.taken = 0            # items taken out of the batch to be written
        self.flushes = 0
        self.last_flush = 0.0
        self.shared_in_flight = InFlight()
        # The failure is an item of ours that could not be sent: the send() that wrote it
        # raises it at once.
        self.item_failed = False
        # Set when the finalizer ran in the reader thread itself: it closes the channel
        # on its way out.
        self.reader_closes_channel = False
        # Opened by each thread as it leaves. Ending waits on these rather than on
        # Thread.join(): on 3.11 and 3.12 a join interrupted by Ctrl-C marks the thread
        # stopped while it still runs (bpo-45274), so a later join would not wait for it.
        self.reader_done = Gate()
        self.flusher_done = Gate()
        self.write_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.wake = threading.Event()
        label = f"gilstudy-coprocess-{peer.pid if peer.pid is not None else where}"
        self.reader = threading.Thread(target=self._read_loop, args=(expect_hello,),
                                       name=f"{label}-reader", daemon=True)
        self.flusher = threading.Thread(target=self._flush_loop, name=f"{label}-flusher",
                                        daemon=True)
        self.reader.start()
        self.flusher.start()

    @property
    def sent(self) -> int:
        return self.taken + len(self.batch)

    @property
    def acknowledged(self) -> int:
        return self.flow.acknowledged

    @property
    def halted(self) -> bool:
        return (self.phase is not _Phase.OPEN or self.failure is not None
                or self.writer_broken)

    def _cannot_write(self) -> bool:
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
            self.limit = 0
        self.flow.wake()
        tell = getattr(self.results, "fail", None)
        if first and callable(tell):
            try:
                tell(exc)
            except Exception:
                pass  # the caller still gets the failure from send() or close()

    def break_writer(self) -> None:
        """A write failed: the peer is gone; the reader will say how."""
        with self.state_lock:
            self.writer_broken = True
            self.limit = 0
        self.flow.wake()

    def raise_failure(self):
        exc = self.failure
        self.failure_raised = True
        if isinstance(exc, (RemoteError, CoprocessDied, CoprocessStalled)):
            # Facts of this moment; the traceback of an earlier raise would only mislead.
            exc._set_counts(self.sent, self.acknowledged)
            raise exc.with_traceback(None)
        raise exc

    def stall(self, caller: str, patience: Patience,
              what: str = "no item acknowledged and no byte read"):
        """``caller``'s patience ran out: the peer made no progress for its timeout
        (``what`` says which). Record and raise CoprocessStalled (or the failure recorded
        first)."""
        self.fail(CoprocessStalled(self.peer.pid, f"{caller} saw no progress for "
                                                  f"{patience.timeout:g} s: {what}",
                                   where=self.peer.name))
        self.raise_failure()

    def died(self, exitcode: int | None, detail: str) -> CoprocessDied:
        return CoprocessDied(self.peer.pid, exitcode, detail, where=self.peer.name)

    def refuse(self, call: str = "send()"):
        """The link halted: raise why."""
        if self.failure is None and self.writer_broken:
            # A write failed and the reader has not yet said why: it sees the EOF next.
            if threading.current_thread() is not self.reader:
                self.reader_done.wait(EXIT_TIMEOUT + 1)
            self.fail(self.died(self.peer.wait(0), f"its {self.where} broke"))
        if self.failure is not None:
            self.raise_failure()
        raise ValueError(f"{call} on a closed {self.peer.name}")

    # Sending --------------------------------------------------------------------------

    def on_fill(self, item: Any, timeout: float | None) -> None:
        """send()'s slow path, entered just after ``item`` was appended: the batch is full,
        or just started, or the window has no room, or the link halted.

        The item is taken back out of the batch first, unless a flush took it meanwhile
        (another thread's close() or the flusher: it is on its way, so send() returns). It
        goes back, or out in a frame, only once nothing can raise any more. Hence a send()
        that raises did not deliver its item, and one that returns did, closing or not."""
        batch = self.batch
        with self.state_lock:
            # One producer at a time: if the item is still there, it is the last one.
            if not batch or batch[-1] is not item:
                return
            batch.pop()
        patience = None
        waited = False
        while True:
            with self.state_lock:
                refused = self.halted
                # A lone item after a quiet spell goes out from here at once, as the flusher
                # would send it: so a send() whose item cannot be sent raises itself.
                full = len(batch) + 1 >= self.batch_size or (
                    not batch and time.monotonic() - self.last_flush >= FLUSH_INTERVAL)
                room = self.flow.room(self.taken)
                if not refused and not full and len(batch) < room:
                    batch.append(item)
                    self.limit = max(1, min(self.batch_size, room))
                    break
            if refused:
                self.refuse()
            if patience is None:
                patience = self.flow.patience(timeout)
            if full:
                # The item fills the batch: it goes out with it, once the window has room.
                if not self.flush(patience, "send()", item):
                    self.refuse()
                if self.item_failed and not self.failure_raised:
                    self.raise_failure()  # its batch could not be sent: it was not delivered
                return
            # The window is full: wait for acknowledgements, then the item joins the batch.
            try:
                self.flow.wait_for_room(lambda: self.taken + len(batch), 1, patience,
                                        lambda: self.halted)
            except TimeoutError:
                self.stall("send()", patience)
            waited = True
        if waited or len(batch) == 1:
            # A batch just started, or one the flusher could not write for want of room.
            self.wake.set()

    def _lock_writes(self, patience: Patience, caller: str) -> None:
        """Take write_lock, or stall when the peer makes no progress meanwhile: another
        thread's write (the flusher's) is waiting for the peer to read."""
        while not self.write_lock.acquire(timeout=patience.lock_wait()):
            if patience.stalled():
                self.stall(caller, patience)

    def flush(self, patience: Patience | None = None, caller: str = "flush()",
              item: Any = _NO_ITEM) -> bool:
        """Write the batch as ITEMS frames now (nothing when empty or after a failure), and
        after it ``item``, send()'s own, when given: one frame unless it would exceed what
        the peer accepts. With ``item``, first wait until the window has room for them
        all. Returns whether ``item`` was taken (False: the link halted first). Raises
        CoprocessStalled, recorded as the failure, when ``patience`` runs out; ``item`` is
        then not delivered (at worst it is in a frame left half written)."""
        if patience is None:
            patience = self.flow.patience(None)
        self._lock_writes(patience, caller)
        try:
            batch = self.batch
            if item is not _NO_ITEM:
                try:
                    if not self.flow.wait_for_room(lambda: self.taken + len(batch), 1,
                                                   patience, lambda: self.halted):
                        return False
                except TimeoutError:
                    self.stall(caller, patience)
            with self.state_lock:
                if self._cannot_write() or (item is not _NO_ITEM and self.halted):
                    return False
                # Everything appended so far, but never past the window: an item appended
                # beyond it (by a send() whose on_fill() is about to take it back) stays.
                count = len(batch)
                if item is _NO_ITEM:
                    count = min(count, max(0, self.flow.room(self.taken)))
                chunk = batch[:count]
                del batch[:count]
                if item is not _NO_ITEM:
                    chunk.append(item)
                self.taken += len(chunk)
                if not self.halted:
                    self.limit = 1
                # A send() that read the old limit appended without calling on_fill(): its
                # item would wait for the next send() or close(), so the flusher is woken
                # for it (unless it lies beyond the window, where its send() waits).
                has_leftovers = bool(batch) and self.flow.room(self.taken) > 0
            if has_leftovers:
                self.wake.set()
            count = len(chunk)
            if not count:
                return True
            self.flushes += 1
            self.last_flush = time.monotonic()
            shared = getattr(self.channel, "shared", None)
            if shared is not None and not self._wait_for_shared_room(patience, caller):
                return True
            try:
                frames = wire.dumps_in_frames(chunk, self.channel.peer_max_frame, shared)
            except ConnectionError:
                self.break_writer()  # the side socket broke: the peer is gone
                return True
            except Exception as exc:
                self._unpicklable(chunk, exc)
                return True
            moved = shared.moved if shared is not None else 0
            if moved:
                self.shared_in_flight.add(self.taken, moved)
            try:
                self.channel.write_frames([(wire.ITEMS, payload, buffers)
                                           for payload, buffers in frames], patience)
            except TimeoutError:
                # The frame may be half written: nothing more can go on this channel.
                self.stall(caller, patience)
            except OSError:
                self.break_writer()
                return True
            per_item = (sum(wire.frame_size(*frame) for frame in frames) + moved) / count
            self.batch_size = max(1, min(self.max_batch, self.batch_size * 4,
                                         int(_FRAME_BYTES / per_item)))
            return True
        finally:
            self.write_lock.release()

    def _wait_for_shared_room(self, patience: Patience, caller: str) -> bool:
        """Before a batch is copied into shared memory, wait while the window of arrays in
        flight is full (see gilstudy.shared.InFlight). False when the link halted
        meanwhile."""
        while (through := self.shared_in_flight.awaits(self.flow.acknowledged)) is not None:
            # Flow control's wait for room, asked for a window that ends at ``through``:
            # it returns once the peer has acknowledged that many items.
            try:
                if not self.flow.wait_for_room(
                        lambda: through - 1 + self.flow.max_in_flight, 1, patience,
                        self._cannot_write):
                    return False
            except TimeoutError:
                self.stall(caller, patience, "no array acknowledged and no byte read")
        return True

    def _unpicklable(self, chunk: list, exc: Exception) -> None:
        first = self.taken - len(chunk)
        index = getattr(exc, "index", None)
        if index is not None:
            # Too large for a frame: the index is the item's place in ``chunk``.
            first += index
            exc = ProtocolError(f"item number {first} sent to {self.peer.name} pickles to "
                                f"more than the {self.channel.peer_max_frame} bytes a frame "
                                "may hold there; raise max_frame on both ends to send it")
        else:
            for offset, item in enumerate(chunk):
                try:
                    pickle.dumps(item, wire.PICKLE_PROTOCOL)
                except Exception as item_exc:
                    exc = item_exc
                    first += offset
                    break
        exc.add_note(f"gilstudy: item number {first} sent to {self.peer.name} could not be "
                     "pickled; the worker was abandoned with its consumer unclosed")
        self.fail(exc)
        self.item_failed = self.failure is exc

    def _flush_loop(self) -> None:
        # Woken when the batch goes from empty to one item. A lone item after a quiet
        # spell leaves at once; otherwise the batch waits until FLUSH_INTERVAL after the
        # previous frame, unless the producer filled and flushed it meanwhile. Its writes
        # have no timeout: a stalled peer holds it until the link fails or ends, which
        # cancels them. It never waits for room: send() keeps the batch within the window.
        wake = self.wake
        try:
            while True:
                wake.wait()
                wake.clear()
                if self.phase is not _Phase.OPEN:
                    return
                seen = self.flushes
                delay = self.last_flush + FLUSH_INTERVAL - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                    if self.phase is not _Phase.OPEN:
                        return
                if self.flushes == seen:
                    self.flush()
        finally:
            self.flusher_done.open()

    # Reading --------------------------------------------------------------------------

    def _read_loop(self, expect_hello: bool) -> None:
        channel = self.channel
        acknowledge = self.flow.acknowledge
        try:
            if expect_hello:
                wire.read_hello(channel)
            while True:
                kind, payload = channel.read_frame()
                if kind == wire.ACK:
                    acknowledge(wire.ACK_BODY.unpack(payload)[0])
                elif kind == wire.RESULTS:
                    self._forward(payload)
                elif kind == wire.ERROR:
                    self.fail(RemoteError(*wire.decode_error(channel, payload),
                                          where=self.peer.name))
                elif kind == wire.DONE:
                    self.peer_done = True
                    return
                else:
                    raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame from "
                                        f"{self.peer.name}")
        except (EOFError, OSError):
            self.fail(self.died(self.peer.wait(EXIT_TIMEOUT),
                                f"its {self.where} closed before the consumer was closed"))
        except ProtocolError as exc:
            self.fail(exc)
        except Exception as exc:  # a malformed ACK (struct.error)
            self.fail(ProtocolError(f"malformed frame from {self.peer.name}: {exc}"))
        finally:
            if self.reader_closes_channel:
                self.channel.close()
            self.reader_done.open()
            self.flow.wake()

    def _forward(self, payload) -> None:
        if self.results is None:
            return
        try:
            values = self.channel.load(payload)
        except ProtocolError as exc:
            exc.add_note(f"gilstudy: a result from {self.peer.name} could not be unpickled")
            self.results = None
            self.fail(exc)
            return
        send = self.results.send
        try:
            for value in values:
                send(value)
        except Exception as exc:
            exc.add_note(f"gilstudy: raised by the results consumer of {self.peer.name}")
            self.results = None
            self.fail(exc)

    # Ending ---------------------------------------------------------------------------

    def _begin_closing(self) -> bool:
        """Refuse sends from now on and release the flusher; True the first time only."""
        with self.state_lock:
            if self.phase is not _Phase.OPEN:
                return False
            self.phase = _Phase.CLOSED
            self.limit = 0
        self.wake.set()
        self.flow.wake()
        return True

    def close(self, timeout: float | None = None) -> None:
        if self.phase is _Phase.FINISHED:
            return
        patience = self.flow.patience(timeout)
        if self._begin_closing() and self.failure is None:
            self._say_close(patience)
        if self.failure is None and not self.writer_broken:
            # The consumer handles what is left, closes, says DONE.
            while not self.reader_done.wait(POLL):
                if patience.stalled():
                    self.stall("close()", patience, "its consumer acknowledged no item and "
                                                    "did not finish closing")
        self._finish(force=False)
        if self.failure is None and not self.peer_done:
            self.fail(self.died(self.peer.wait(0),
                                f"its {self.where} closed before the consumer was closed"))
        if self.failure is not None and not self.failure_raised:
            self.raise_failure()

    def _say_close(self, patience: Patience) -> None:
        """Write what is left of the batch and CLOSE, then close the writing side."""
        self.flush(patience, "close()")
        self._lock_writes(patience, "close()")
        try:
            if not self._cannot_write():
                try:
                    self.channel.write_frame(wire.CLOSE, patience=patience)
                except TimeoutError:
                    self.stall("close()", patience)
                except OSError:
                    self.writer_broken = True
            self.channel.close_writer()
        finally:
            self.write_lock.release()

    def abort(self) -> None:
        if self.phase is _Phase.FINISHED:
            return
        self._begin_closing()
        self._finish(force=True)

    def _finish(self, force: bool) -> None:
        """End the peer (politely unless ``force``), wait for both threads, close the
        channel and remove what the transport left behind. Every step may run twice, so
        abort() can finish what an interrupted close() began."""
        self.wake.set()  # the flusher leaves: the phase is no longer OPEN
        if force or self.failure is not None:
            # A write waiting for a peer that no longer reads gives up (within 50 ms).
            self.channel.cancel_writes()
        in_flusher = threading.current_thread() is self.flusher
        if not in_flusher:
            # A writer cancelled above lets go within 50 ms. A lock still held after
            # EXIT_TIMEOUT was left taken by a Ctrl-C that landed between an acquire and
            # its try: close the writer anyway rather than wait for ever.
            has_lock = self.write_lock.acquire(timeout=EXIT_TIMEOUT)
            try:
                # The peer reads EOF: one that waits for it (after an error) ends.
                self.channel.close_writer()
            finally:
                if has_lock:
                    self.write_lock.release()
        if not self.peer.stop(force) or force:
            # Wakes a reader or writer blocked on a socket; pipes broke with the process.
            self.channel.shutdown()
        if not in_flusher:
            self.flusher_done.wait()
            self.flusher.join()
        if threading.current_thread() is not self.reader:
            self.reader_done.wait()
            self.reader.join()
            self.channel.close()
            # Results are all delivered: the link lets go of them (and of the shared
            # memory that arrays among them lie over).
            self.results = None
        else:
            # Garbage collection ran the finalizer in the reader thread itself: the reader
            # closes the channel on its way out.
            self.reader_closes_channel = True
        for cleanup in self.cleanups:
            cleanup()
        self.phase = _Phase.FINISHED


class RemoteConsumer(ExitRule):
    """A consumer running on the far side of a framed channel (in another process, for
    spawn(), coprocesses() and connect()), fed in batches.

    ``send(item)`` appends the item to a batch: nothing is pickled or written per item. A
    full batch (sized to make frames of about 64 KiB) is pickled and written by the send
    that fills it, and a flusher thread writes a partial batch no later than FLUSH_INTERVAL
    (5 ms) after its first item. Results (non-None values of the remote consumer's send()
    and close()) are passed to ``results.send`` from a reader thread, in order.

    Items are pickled when their batch is written, not by send(): do not change an item
    after sending it. To a spawned coprocess, numpy arrays of 1 MiB or more are copied
    once into shared memory (none for a gilstudy.shared_array) and the consumer gets an
    array over it (see gilstudy.shared); elsewhere, contiguous arrays (and anything else
    that pickles with protocol-5 out-of-band buffers) of 64 KiB or more travel beside the
    pickle, not copied into it, and arrive in fresh buffers of their own.

    Trouble: when the remote consumer raises, the next send() or close() raises
    RemoteError (a ConsumerError; the remote traceback is its ``__cause__``); when the
    worker dies or the connection drops, CoprocessDied (exit code or signal); when a
    timeout given to send(), flush() or close() passes with no progress from the peer (no
    item acknowledged, no byte read), CoprocessStalled (a TimeoutError); a consumer that is
    slow but keeps acknowledging never stalls. All three carry how many items were sent and
    how many the consumer acknowledged: the items after ``acknowledged`` are the ones to
    send again. close() raises such a failure only if no send() raised it before. An item
    that cannot be pickled, or that alone is larger than the frame limit, abandons the
    worker: send() or close() raises the pickling error (or ProtocolError), with a note
    naming the item. Leaving a ``with`` block on an exception aborts instead of closing
    (the rule of every runner).

    Flow control: at most ``max_in_flight`` items (16384 by default) are sent and not yet
    acknowledged; the send() that would exceed it waits for the consumer. Until a failure,
    a send() that returns has delivered its item (close() returns only once it is handled)
    and one that raises has not, even when another thread calls close() meanwhile. One
    producer thread at a time may call send().
    """

    def __init__(self, link: _Link):
        self._link = link
        self._batch = link.batch
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
        link = self._link
        return link.taken + len(self._batch) - link.acknowledged

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
        return self._link.phase is not _Phase.OPEN

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Queue ``item`` for the remote consumer; see the class docstring for failures.

        Most calls only append to the batch; the one that fills it writes it, and waits
        while the peer does not read or while ``max_in_flight`` items are unacknowledged.
        With ``timeout`` (seconds) such a wait ends with CoprocessStalled once the peer has
        made no progress for that long; without, it lasts as long as the peer stalls. A
        send() that raises did not deliver its item."""
        # The hot path is an append and two comparisons; see _Link.limit. A bad timeout is
        # refused at once, not when a later call happens to write the batch.
        if timeout is not None:
            _checks.timeout("send", timeout)
        batch = self._batch
        batch.append(item)
        if len(batch) >= self._link.limit:
            self._link.on_fill(item, timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write the items queued so far now, instead of within FLUSH_INTERVAL; ``timeout``
        as for send()."""
        timeout = _checks.timeout("flush", timeout)
        link = self._link
        if link.halted:
            link.refuse("flush()")
        link.flush(link.flow.patience(timeout), "flush()")

    def close(self, timeout: float | None = None) -> None:
        """Wait until the remote consumer has handled every item sent, close it (its
        close() result arrives as a result), end the worker (kill it if it takes longer
        than EXIT_TIMEOUT to exit) and raise the failure if there was one that no send()
        raised. Idempotent: once it has returned, a second close() does nothing.

        With ``timeout`` (seconds), when the peer makes no progress for that long (reads
        nothing, acknowledges no item) before its consumer has closed, close() raises
        CoprocessStalled and leaves the worker as it is; a later close() ends it (within
        EXIT_TIMEOUT, killing it if need be) and abort() ends it at once. Without, close()
        waits as long as the consumer works.

        Ctrl-C while it waits raises KeyboardInterrupt once the worker is ended; further
        Ctrl-Cs until then are absorbed, so nothing is left open however many arrive."""
        timeout = _checks.timeout("close", timeout)
        link = self._link
        with interrupts_held(first_raises=True, cleanup=link.abort):
            self._close_held(link, timeout)   # a call first: the guard covers its line

    def _close_held(self, link: "_Link", timeout: float | None) -> None:
        try:
            link.close(timeout)
        except BaseException as exc:
            if exc is not link.failure:
                # Interrupted (Ctrl-C) while waiting: end the worker now.
                link.abort()
            raise
        finally:
            if link.phase is _Phase.FINISHED:
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
        state = "open" if link.phase is _Phase.OPEN else "closed"
        return (f"<RemoteConsumer {link.peer.name} over {link.where}, {state}, "
                f"{link.sent} sent, {link.acknowledged} acknowledged>")
