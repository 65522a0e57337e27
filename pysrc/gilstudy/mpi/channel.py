"""gilstudy's frames between two ranks of one MPI job: MpiChannel carries the framed protocol
a coprocess speaks over a pipe through MPI calls, so the far-side loop and RemoteConsumer
run over it unchanged. A write is one buffer message holding the frames as bytes (small
items arrive batched, as the sender batched them; nothing is pickled again), then one
buffer message per out-of-band buffer (numpy arrays). Every wait polls with a back-off,
so a waiting rank sleeps instead of spinning in MPI. Imported only inside MPI processes.
"""

import collections
import errno
import os
import queue
import struct
import threading
import time

from mpi4py import MPI

from gilstudy import wire
from gilstudy.errors import ProtocolError

__all__ = ["TAG", "WINDOW", "LONGEST", "POSTBOX_LONGEST", "SPIN", "Backoff", "Wake",
           "MpiChannel", "Postbox", "quiet_barrier", "encode_headers", "decode_headers"]

# The tag of every gilstudy message, on a communicator gilstudy duplicated for itself.
TAG = 0x6753

# Messages a channel may have in flight (sent but not yet matched by a receive) before a
# write waits: the MPI counterpart of a pipe's buffer. Sends are synchronous-mode
# (issend), so a rank that stops reading stops its sender after this many, as a full pipe
# would, instead of piling messages up in its MPI library's memory.
WINDOW = 16

# A buffer this large is driven to completion by its write (see MpiChannel._drive), for at
# most the time it would take at _DRIVE_RATE bytes a second (and _DRIVE_LEAST seconds):
# a receiver that has not posted its receive by then is busy, and the message moves on
# at the pace of later polls. Over shared memory a 16 MiB array takes about 1.5 ms here.
_DRIVE_MIN = 1 << 20
_DRIVE_RATE = 1e9
_DRIVE_LEAST = 2e-3

# Requests that never completed on a channel that was closed anyway (its rank stopped
# reading, and the caller gave up): kept, with the buffers they send from, for as long as
# the process lives, since MPI may still read those buffers.
_abandoned: list = []


# The longest sleep between two polls of a waiting rank, in seconds. A message that arrives
# while a rank sleeps waits for the rest of that sleep: half of it on average. 500 µs keeps a
# lone round trip after a quiet spell (one such wait: the other hops are woken, see Wake)
# under mpi4py.futures' (which sleeps up to 1 ms), while an idle rank wakes about 2,000
# times a second, a few percent of a core at most (bench/bench_mpi.py measures both).
LONGEST = 500e-6

# After this long with nothing arrived, a waiting rank's sleeps may grow to IDLE_FACTOR times
# their longest: a rank idle that long is waiting for work, not for the next item of a
# burst, and a poll costs more under some builds (the free-threaded 3.13t took 6% of a
# core at 500 µs). A lone round trip after such a quiet spell waits about one longer sleep.
QUIET = 0.1
IDLE_FACTOR = 4

# The longest sleep of a Postbox, which a channel's write wakes (see Wake): what it reads
# answers what was written, so it needs a short sleep only while an answer is due, and
# sleeps longer when the whole job is idle, for less of a core.
POSTBOX_LONGEST = 2e-3

# How long a rank polls without sleeping after something arrived, or after it sent what
# it expects an answer to: the next item of a burst, or the answer to a round trip, often
# comes that soon, and back-to-back round trips then never wait for a sleep to end. Short
# enough that a rank waiting for work takes little from ranks that compute on the same
# cores.
SPIN = 250e-6

# Linux lets a sleep overrun by the thread's timer slack, 50 µs by default, so even
# time.sleep(0) takes 50 to 70 µs. A thread alone in its process spins with sched_yield()
# instead, which takes about a microsecond (with other Python threads beside it, that
# would starve them of the GIL: they would wait for the interpreter's 5 ms switch
# interval). (Sleeps that start at 50 µs instead of 1/1024 of the longest made
# back-to-back round trips ten times slower: measured, not understood.)


class Wake:
    """What wakes a Backoff early, from any thread: set() ends its current sleep (or the
    next one) and makes it spin again, as after an arrival. Cheaper than an Event: one lock,
    held while nothing is pending."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:
            pass   # already set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, or until set(); whether it was set (it is then
        clear again)."""
        return self._lock.acquire(timeout=timeout)


class Backoff:
    """A polite wait between two polls, as mpi4py.futures does it: polls without sleeping
    for the first ``spin`` seconds after reset() (SPIN; between polls it yields the
    processor, with sched_yield() when ``alone``, the only Python thread that runs, else
    with time.sleep(0), which lets other threads take the GIL), then sleeps 1/1024 of
    ``longest`` doubling up to ``longest`` (LONGEST), and up to IDLE_FACTOR times that once
    nothing arrived for QUIET seconds; reset() when something arrived. With ``wake``
    (a Wake), its set() cuts a sleep short and resets: a thread that just sent a request
    sets the poller's Wake, so the answer is polled for at once. A blocking MPI receive
    spins at 100% of a core (mpi4py#419); a rank waiting here uses a few percent at most."""

    def __init__(self, longest: float = LONGEST, spin: float = SPIN,
                 wake: Wake | None = None, alone: bool = False):
        self.longest = longest
        self.shortest = longest / 1024
        self.spin = spin
        self.wake = wake
        self._yield = os.sched_yield if alone else _sleep_zero
        self.reset()

    def reset(self) -> None:
        self.delay = 0.0
        now = time.monotonic()
        self._spin_until = now + self.spin
        self._quiet_from = now + QUIET

    def sleep(self) -> None:
        if self.delay == 0.0 and time.monotonic() < self._spin_until:
            self._yield()
            return
        if self.wake is None:
            time.sleep(self.delay)
        elif self.wake.wait(self.delay):
            self.reset()
            return
        longest = self.longest
        if self.delay >= longest and time.monotonic() >= self._quiet_from:
            longest *= IDLE_FACTOR
        self.delay = min(longest, max(self.shortest, self.delay * 2))


def _sleep_zero() -> None:
    time.sleep(0)


# A write's first message: the number of frames, then for each its kind, its payload's
# length and its out-of-band buffers' count, then their sizes; the payloads follow, in
# order. An empty message is the end of the stream.
_COUNT = struct.Struct("<I")
_FRAME = struct.Struct("<BQI")
_SIZE = struct.Struct("<Q")


def _given_up(deadline) -> bool:
    """Whether a write waiting on the peer gives up: ``deadline`` is None (never), a
    gilstudy.flow.Patience (once it says the peer stalled) or a time.monotonic() time."""
    if deadline is None:
        return False
    stalled = getattr(deadline, "stalled", None)
    return stalled() if stalled is not None else time.monotonic() >= deadline


def encode_headers(headers: list) -> bytes:
    """The first message of a write of ``headers``, ``[(kind, payload, sizes)]``."""
    parts = [_COUNT.pack(len(headers))]
    for kind, payload, sizes in headers:
        parts.append(_FRAME.pack(kind, len(payload), len(sizes)))
        parts.extend(_SIZE.pack(size) for size in sizes)
    parts.extend(payload for _, payload, _ in headers)
    return b"".join(parts)


def decode_headers(message: bytes | bytearray) -> list:
    """``[(kind, payload, sizes)]`` from a write's first message; ProtocolError when it is
    malformed."""
    view = memoryview(message)
    try:
        (count,) = _COUNT.unpack_from(view, 0)
        offset = _COUNT.size
        shapes = []
        for _ in range(count):
            kind, length, buffers = _FRAME.unpack_from(view, offset)
            offset += _FRAME.size
            sizes = [_SIZE.unpack_from(view, offset + index * _SIZE.size)[0]
                     for index in range(buffers)]
            offset += buffers * _SIZE.size
            shapes.append((kind, length, sizes))
        headers = []
        for kind, length, sizes in shapes:
            if offset + length > len(view):
                raise ProtocolError("a message of frames from an MPI rank ends inside a "
                                    "payload")
            headers.append((kind, bytes(view[offset:offset + length]), sizes))
            offset += length
    except struct.error as exc:
        raise ProtocolError(f"a malformed message of frames from an MPI rank: {exc}") from None
    if offset != len(view):
        raise ProtocolError(f"a message of frames from an MPI rank has {len(view) - offset} "
                            "bytes too many")
    return headers


def _frame_length(payload: bytes, sizes: list) -> int:
    """The length a frame of ``payload`` and buffers of ``sizes`` has on a byte stream
    (wire.frame_size), so the limits read the same over MPI."""
    if not sizes:
        return len(payload)
    return 4 + 8 * len(sizes) + len(payload) + sum(sizes)


def _receive(comm, message, status, source: int) -> list | None:
    """The frames of the matched ``message`` from ``source`` (``status`` the one its probe
    filled), their out-of-band buffers received into fresh buffers, as ``[(kind, payload,
    length)]``; None for the sender's end of stream."""
    first = bytearray(status.Get_count(MPI.BYTE))
    message.Recv([first, MPI.BYTE])
    if not first:
        return None
    headers = decode_headers(first)
    frames = []
    for kind, payload, sizes in headers:
        if sizes:
            buffers = []
            for size in sizes:
                buffer = wire.receive_buffer(size)
                comm.Recv([buffer, MPI.BYTE], source, TAG)
                buffers.append(buffer)
            frames.append((kind, wire.OutOfBand(payload, buffers), _frame_length(payload, sizes)))
        else:
            frames.append((kind, payload, len(payload)))
    return frames


class MpiChannel(wire.FrameChannel):
    """The frames between this rank and rank ``peer`` of ``comm``: what gilstudy.wire's
    Channel is over a pipe or a socket, with the same members, so that wire.handshake(),
    run_far_side() and RemoteConsumer use it as they use those.

    Reading: from ``inbox`` (the Postbox's queue for ``peer``) when given, which is how rank
    0 reads from many ranks with one polling thread; else by polling MPI here, which is how
    a serving rank reads from rank 0. ``read_frame`` raises EOFError once the peer closed
    its writing side (or shutdown() was called), ProtocolError for a frame over the limit.

    Loading a payload and writing one frame are wire.FrameChannel's, as for a byte-stream
    channel.

    Writing: ``write_frames`` sends without waiting unless WINDOW messages are in flight;
    then it waits, raising TimeoutError at ``deadline`` (the channel is then unusable) and
    BrokenPipeError once cancel_writes() was called or the writing side was closed.
    """

    def __init__(self, comm, peer: int, inbox: queue.SimpleQueue | None = None, *,
                 max_frame: int = wire.MAX_FRAME, allowed=None):
        super().__init__(max_frame=max_frame, allowed=allowed)
        self.comm = comm
        self.peer = peer
        self._inbox = inbox
        self._frames: collections.deque = collections.deque()
        self._in_flight: collections.deque = collections.deque()   # (request, what it sends)
        self._cancelled = False
        self._writer_closed = False
        self._shut = False
        self._ended = False   # the peer's end of stream was read

    # Reading ----------------------------------------------------------------------------

    def read_frame(self, max_length: int | None = None) -> tuple[int, object]:
        while not self._frames:
            if self._ended:
                raise EOFError("the rank closed its channel")
            frames = self._next_message()
            if frames is None:
                self._ended = True
            else:
                self._frames.extend(frames)
        kind, payload, length = self._frames.popleft()
        limit = self.max_frame if max_length is None else min(max_length, self.max_frame)
        if length > limit:
            raise ProtocolError(f"a {wire.KIND_NAMES.get(kind, repr(kind))} frame of {length} "
                                f"bytes from MPI rank {self.peer}, more than the {limit} "
                                "accepted here")
        return kind, payload

    def _next_message(self) -> list | None:
        if self._inbox is not None:
            return self._inbox.get()
        comm, peer = self.comm, self.peer
        status = MPI.Status()
        # A serving rank reads in the thread that runs its consumer: nothing else runs.
        backoff = Backoff(alone=True)
        while not self._shut:
            message = comm.improbe(peer, TAG, status)
            if message is not None:
                return _receive(comm, message, status, peer)
            backoff.sleep()
        return None

    # Writing ----------------------------------------------------------------------------

    def write_frames(self, frames, deadline: float | None = None) -> None:
        if self._writer_closed:
            raise BrokenPipeError(errno.EPIPE, "the channel's writing side is closed")
        headers, buffers = [], []
        for kind, payload, *rest in frames:
            views = rest[0] if rest else ()
            length = wire.frame_size(payload, views)
            if length > self.peer_max_frame:
                raise ProtocolError(f"a {wire.KIND_NAMES[kind]} frame of {length} bytes, more "
                                    f"than the {self.peer_max_frame} the peer accepts")
            headers.append((kind, bytes(payload), [view.nbytes for view in views]))
            buffers.extend(views)
        self._wait_for_room(deadline)
        first = encode_headers(headers)
        self._in_flight.append((self.comm.Issend([first, MPI.BYTE], self.peer, TAG), first))
        for view in buffers:
            self._wait_for_room(deadline)
            request = self.comm.Issend([view, MPI.BYTE], self.peer, TAG)
            self._in_flight.append((request, view))
            if view.nbytes >= _DRIVE_MIN:
                self._drive(request, view.nbytes, deadline)
        # An answer may follow: the Postbox that reads for this channel polls for it now.
        wake = getattr(self._inbox, "wake", None)
        if wake is not None:
            wake.set()

    def _drive(self, request, nbytes: int, deadline: float | None) -> None:
        """Keep testing ``request`` (the send of a buffer of ``nbytes``) until it completes: MPI moves a
        large message only while the sender calls into it, so a sender that returned at
        once would leave it to crawl between the polls of whatever thread calls MPI next.
        Gives up (leaving it in flight) after the time ``nbytes`` takes at _DRIVE_RATE, at
        ``deadline``, or once writes were cancelled."""
        until = time.monotonic() + max(_DRIVE_LEAST, nbytes / _DRIVE_RATE)
        while not request.Test():
            if self._cancelled or _given_up(deadline) or time.monotonic() > until:
                return

    def _wait_for_room(self, deadline: float | None) -> None:
        in_flight = self._in_flight
        backoff = Backoff()
        while True:
            while in_flight and in_flight[0][0].Test():
                in_flight.popleft()
            if len(in_flight) < WINDOW:
                return
            if self._cancelled:
                raise BrokenPipeError(errno.EPIPE, "writes to this channel were cancelled")
            if _given_up(deadline):
                raise TimeoutError("the peer stopped reading")
            backoff.sleep()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every message sent was received; whether
        they were. A rank does this before it finalizes MPI."""
        deadline = time.monotonic() + timeout
        in_flight = self._in_flight
        backoff = Backoff()
        while in_flight:
            if in_flight[0][0].Test():
                in_flight.popleft()
            elif time.monotonic() >= deadline:
                return False
            else:
                backoff.sleep()
        return True

    def cancel_writes(self) -> None:
        """From any thread: a write waiting for room raises BrokenPipeError, and so does
        every later one."""
        self._cancelled = True

    # Ending -----------------------------------------------------------------------------

    def close_writer(self) -> None:
        """Tell the peer that nothing more comes (it reads EOF after the frames already
        sent); never waits. Idempotent."""
        if self._writer_closed:
            return
        self._writer_closed = True
        self._in_flight.append((self.comm.Issend([_EMPTY, MPI.BYTE], self.peer, TAG), _EMPTY))

    def shutdown(self) -> None:
        """From any thread: a read waiting in another thread returns EOF."""
        self._shut = True
        if self._inbox is not None:
            self._inbox.put(None)

    def close(self) -> None:
        """Close the writing side and forget the channel. Messages still in flight keep
        their buffers alive (see _abandoned)."""
        self.close_writer()
        while self._in_flight and self._in_flight[0][0].Test():
            self._in_flight.popleft()
        if self._in_flight:
            _abandoned.append(tuple(self._in_flight))
            self._in_flight.clear()


_EMPTY = bytearray()


class _Inbox(queue.SimpleQueue):
    """A Postbox's queue for one rank's channel; ``wake`` is the Postbox's Wake, which the
    channel sets after each write."""

    __slots__ = ("wake",)


class Postbox:
    """Rank 0's one receiver: a thread polls for messages from every one of ``sources``
    (with a back-off), receives each whole, buffers included, and queues its frames for that
    rank's channel (``inbox(rank)``). One polling thread serves any number of ranks, where a
    thread per rank would wake thousands of times a millisecond. A channel that writes sets
    ``wake``, so the answer is polled for at once instead of after the current sleep.

    close() waits (up to ``timeout``) until every rank has sent its end of stream, so no
    rank is left waiting for its last message to be received, then stops the thread. If
    polling fails (MPI raised), every inbox gets an end of stream, so no reader waits for
    ever, and the error is kept as ``failure``."""

    def __init__(self, comm, sources):
        self.comm = comm
        self.wake = Wake()
        self._inboxes = {}
        for source in sources:
            inbox = self._inboxes[source] = _Inbox()
            inbox.wake = self.wake
        self._open = len(self._inboxes)    # sources that have not yet ended their stream
        self._closing_at: float | None = None
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gilstudy-mpi-postbox",
                                        daemon=True)
        self._thread.start()

    def inbox(self, source: int) -> queue.SimpleQueue:
        return self._inboxes[source]

    def _run(self) -> None:
        comm, inboxes = self.comm, self._inboxes
        status = MPI.Status()
        backoff = Backoff(POSTBOX_LONGEST, wake=self.wake)
        try:
            while True:
                closing_at = self._closing_at
                if closing_at is not None and (not self._open
                                               or time.monotonic() > closing_at):
                    return
                message = comm.improbe(MPI.ANY_SOURCE, TAG, status)
                if message is None:
                    backoff.sleep()
                    continue
                backoff.reset()
                source = status.Get_source()
                frames = _receive(comm, message, status, source)
                if frames is None:
                    self._open -= 1
                inboxes[source].put(frames)
        except BaseException as exc:
            self.failure = exc
            for inbox in inboxes.values():
                inbox.put(None)

    def close(self, timeout: float = 5.0) -> None:
        self._closing_at = time.monotonic() + timeout
        self.wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


def quiet_barrier(comm) -> None:
    """Wait until every rank of ``comm`` got here, sleeping between polls: a rank done
    early would otherwise spin in MPI_Finalize's barrier while the others still work."""
    request = comm.Ibarrier()
    backoff = Backoff()
    while not request.Test():
        backoff.sleep()
