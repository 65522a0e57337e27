"""The sending half of a link (gilstudy.link): the batch that RemoteConsumer.send() fills,
the frames it is written in, and the flusher thread that writes a partial batch no later
than FLUSH_INTERVAL after its first item.

Batches start small and grow (at most 4x per frame) towards frames of about _FRAME_BYTES,
so small items travel a few thousand to a frame and a large item travels alone at once. A
batch never holds more than the window of flow control (gilstudy.flow) has room for.
"""

import pickle
import threading
import time
from typing import Any

from gilstudy import wire
from gilstudy._waits import Gate
from gilstudy.errors import ProtocolError
from gilstudy.flow import Patience
from gilstudy.shared import InFlight

__all__ = ["Batcher", "FLUSH_INTERVAL"]

FLUSH_INTERVAL = wire.FLUSH_INTERVAL

_FIRST_BATCH = 64
_MAX_BATCH = 4096
_FRAME_BYTES = 1 << 16

# What flush() is given in place of send()'s own item when it has none.
_NO_ITEM = object()


class Batcher:
    """The batch of one link and the thread that flushes it. ``link`` (a gilstudy.link.Link)
    holds the state both halves share: the phase, the failure, the locks, flow control.

    ``limit`` is what keeps send() cheap: send() appends, then takes the slow path
    (on_fill) when ``len(batch) >= limit``: the batch size, or less when the window has
    less room; 1 while the batch is empty, so that the item that starts a batch wakes the
    flusher; 0 once the link halted (the link sets it so).
    """

    def __init__(self, link, max_in_flight: int, label: str):
        self.link = link
        self.batch: list = []
        # Frames of at least four batches fit in the window, so the worker never waits.
        self.max_batch = max(1, min(_MAX_BATCH, max_in_flight // 4))
        self.batch_size = min(_FIRST_BATCH, self.max_batch)
        self.limit = 1
        self.taken = 0            # items taken out of the batch to be written
        self.flushes = 0
        self.last_flush = 0.0
        self.shared_in_flight = InFlight()
        # The failure is an item of ours that could not be sent: the send() that wrote it
        # raises it at once.
        self.item_failed = False
        # Opened by the flusher as it leaves (see Link: why a Gate, not Thread.join()).
        self.done = Gate()
        self.write_lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._flush_loop, name=f"{label}-flusher",
                                       daemon=True)

    @property
    def sent(self) -> int:
        return self.taken + len(self.batch)

    def on_fill(self, item: Any, timeout: float | None) -> None:
        """send()'s slow path, entered just after ``item`` was appended: the batch is full,
        or just started, or the window has no room, or the link halted.

        The item is taken back out of the batch first, unless a flush took it meanwhile
        (another thread's close() or the flusher: it is on its way, so send() returns). It
        goes back, or out in a frame, only once nothing can raise any more. Hence a send()
        that raises did not deliver its item, and one that returns did, closing or not."""
        link = self.link
        flow = link.flow
        batch = self.batch
        with link.state_lock:
            # One producer at a time: if the item is still there, it is the last one.
            if not batch or batch[-1] is not item:
                return
            batch.pop()
        patience = None
        waited = False
        while True:
            with link.state_lock:
                refused = link.halted
                # A lone item after a quiet spell goes out from here at once, as the flusher
                # would send it: so a send() whose item cannot be sent raises itself.
                full = len(batch) + 1 >= self.batch_size or (
                    not batch and time.monotonic() - self.last_flush >= FLUSH_INTERVAL)
                room = flow.room(self.taken)
                if not refused and not full and len(batch) < room:
                    batch.append(item)
                    self.limit = max(1, min(self.batch_size, room))
                    break
            if refused:
                link.refuse()
            if patience is None:
                patience = flow.patience(timeout)
            if full:
                # The item fills the batch: it goes out with it, once the window has room.
                if not self.flush(patience, "send()", item):
                    link.refuse()
                if self.item_failed and not link.failure_raised:
                    link.raise_failure()  # its batch could not be sent: it was not delivered
                return
            # The window is full: wait for acknowledgements, then the item joins the batch.
            try:
                flow.wait_for_room(lambda: self.taken + len(batch), 1, patience,
                                   lambda: link.halted)
            except TimeoutError:
                link.stall("send()", patience)
            waited = True
        if waited or len(batch) == 1:
            # A batch just started, or one the flusher could not write for want of room.
            self.wake.set()

    def lock_writes(self, patience: Patience, caller: str) -> None:
        """Take write_lock, or stall when the peer makes no progress meanwhile: another
        thread's write (the flusher's) is waiting for the peer to read."""
        while not self.write_lock.acquire(timeout=patience.lock_wait()):
            if patience.stalled():
                self.link.stall(caller, patience)

    def flush(self, patience: Patience | None = None, caller: str = "flush()",
              item: Any = _NO_ITEM) -> bool:
        """Write the batch as ITEMS frames now (nothing when empty or after a failure), and
        after it ``item``, send()'s own, when given: one frame unless it would exceed what
        the peer accepts. With ``item``, first wait until the window has room for them
        all. Returns whether ``item`` was taken (False: the link halted first). Raises
        WorkerStalled, recorded as the failure, when ``patience`` runs out; ``item`` is
        then not delivered (at worst it is in a frame left half written)."""
        link = self.link
        flow = link.flow
        if patience is None:
            patience = flow.patience(None)
        self.lock_writes(patience, caller)
        try:
            batch = self.batch
            if item is not _NO_ITEM:
                try:
                    if not flow.wait_for_room(lambda: self.taken + len(batch), 1,
                                              patience, lambda: link.halted):
                        return False
                except TimeoutError:
                    link.stall(caller, patience)
            with link.state_lock:
                if link.cannot_write() or (item is not _NO_ITEM and link.halted):
                    return False
                # Everything appended so far, but never past the window: an item appended
                # beyond it (by a send() whose on_fill() is about to take it back) stays.
                count = len(batch)
                if item is _NO_ITEM:
                    count = min(count, max(0, flow.room(self.taken)))
                chunk = batch[:count]
                del batch[:count]
                if item is not _NO_ITEM:
                    chunk.append(item)
                self.taken += len(chunk)
                if not link.halted:
                    self.limit = 1
                # A send() that read the old limit appended without calling on_fill(): its
                # item would wait for the next send() or close(), so the flusher is woken
                # for it (unless it lies beyond the window, where its send() waits).
                has_leftovers = bool(batch) and flow.room(self.taken) > 0
            if has_leftovers:
                self.wake.set()
            count = len(chunk)
            if not count:
                return True
            self.flushes += 1
            self.last_flush = time.monotonic()
            channel = link.channel
            shared = getattr(channel, "shared", None)
            if shared is not None and not self._wait_for_shared_room(patience, caller):
                return True
            try:
                frames = wire.dumps_in_frames(chunk, channel.peer_max_frame, shared)
            except ConnectionError:
                link.break_writer()  # the side socket broke: the peer is gone
                return True
            except Exception as exc:
                self._unpicklable(chunk, exc)
                return True
            moved = shared.moved if shared is not None else 0
            if moved:
                self.shared_in_flight.add(self.taken, moved)
            try:
                channel.write_frames([(wire.ITEMS, payload, buffers)
                                      for payload, buffers in frames], patience)
            except TimeoutError:
                # The frame may be half written: nothing more can go on this channel.
                link.stall(caller, patience)
            except OSError:
                link.break_writer()
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
        link = self.link
        flow = link.flow
        while (through := self.shared_in_flight.awaits(flow.acknowledged)) is not None:
            # Flow control's wait for room, asked for a window that ends at ``through``:
            # it returns once the peer has acknowledged that many items.
            try:
                if not flow.wait_for_room(lambda: through - 1 + flow.max_in_flight, 1,
                                          patience, link.cannot_write):
                    return False
            except TimeoutError:
                link.stall(caller, patience, "no array acknowledged and no byte read")
        return True

    def _unpicklable(self, chunk: list, exc: Exception) -> None:
        link = self.link
        name = link.peer.name
        first = self.taken - len(chunk)
        index = getattr(exc, "index", None)
        if index is not None:
            # Too large for a frame: the index is the item's place in ``chunk``.
            first += index
            exc = ProtocolError(f"item number {first} sent to {name} pickles to "
                                f"more than the {link.channel.peer_max_frame} bytes a frame "
                                "may hold there; raise max_frame on both ends to send it")
        else:
            for offset, item in enumerate(chunk):
                try:
                    pickle.dumps(item, wire.PICKLE_PROTOCOL)
                except Exception as item_exc:
                    exc = item_exc
                    first += offset
                    break
        exc.add_note(f"gilstudy: item number {first} sent to {name} could not be "
                     "pickled; the worker was abandoned with its consumer unclosed")
        link.fail(exc)
        self.item_failed = link.failure is exc

    def _flush_loop(self) -> None:
        # Woken when the batch goes from empty to one item. A lone item after a quiet
        # spell leaves at once; otherwise the batch waits until FLUSH_INTERVAL after the
        # previous frame, unless the producer filled and flushed it meanwhile. Its writes
        # have no timeout: a stalled peer holds it until the link fails or ends, which
        # cancels them. It never waits for room: send() keeps the batch within the window.
        link = self.link
        wake = self.wake
        try:
            while True:
                wake.wait()
                wake.clear()
                if not link.is_open:
                    return
                seen = self.flushes
                delay = self.last_flush + FLUSH_INTERVAL - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                    if not link.is_open:
                        return
                if self.flushes == seen:
                    self.flush()
        finally:
            self.done.open()
