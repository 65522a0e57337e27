# Consumers that run in another Python process. spawn() starts a fresh interpreter that
# builds a consumer and feeds it the items sent here, in batches, over a pipe, two FIFOs or
# a socket; serve() and connect() do the same between processes that meet at a TCP address,
# after proving to each other that they hold the same key (gilstudy.wire holds the framing,
# the handshake and restricted unpickling). CoprocessSender and Coprocess speak the plain
# protocol instead: a bare stream of pickles that any pickle.dump/pickle.load loop reads.

import errno
import fcntl
import itertools
import logging
import os
import pickle
import select
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from gilstudy import wire
from gilstudy._coprocess_child import PeerGone, run_consumer
from gilstudy.errors import (AuthenticationError, CoprocessDied, CoprocessStalled,
                             ProtocolError, RemoteError)

if TYPE_CHECKING:
    from gilstudy.consumers import Dispatch

__all__ = [
    "TRANSPORTS", "FLUSH_INTERVAL", "START_TIMEOUT", "EXIT_TIMEOUT", "CONNECT_TIMEOUT",
    "AUTHKEY_ENV", "MAX_FRAME",
    "CoprocessSender", "Coprocess",
    "RemoteConsumer", "spawn", "coprocesses", "connect",
    "CoprocessServer", "serve", "parse_address", "import_factory", "add_subcommand",
]

TRANSPORTS = ("pipe", "fifo", "socket")

FLUSH_INTERVAL = wire.FLUSH_INTERVAL

# The largest frame (a batch of items or results, out-of-band buffers included) a channel
# accepts unless told otherwise, in bytes.
MAX_FRAME = wire.MAX_FRAME

# Where serve(), connect() and `gilstudy serve` find the key when authkey= is not given:
# the variable's value, as bytes (UTF-8 for text). Both ends must have the same.
AUTHKEY_ENV = "GILSTUDY_AUTHKEY"

# How long spawn() waits for a coprocess to open its FIFOs or connect back, and connect()
# for a server's HELLO, in seconds; only a machine in deep trouble takes longer.
START_TIMEOUT = 60.0

# How long a coprocess may take to exit once its channel has closed, in seconds, before it
# is killed; close() raises CoprocessDied for a dead one at the latest this long after the
# death, and usually within milliseconds.
EXIT_TIMEOUT = 5.0

# How long connect() waits, by default, for the server to accept the connection and finish
# the handshake, and how long a server (or spawn()'s parent) gives a new connection to
# finish it before dropping it, in seconds.
CONNECT_TIMEOUT = 10.0

_log = logging.getLogger(__name__)


# -- The plain protocol: a stream of standard pickles, ended by EOF ------------------------

class CoprocessSender:
    """Send items to a consumer in another process over the binary stream ``stream``.

    Each ``send(item)`` writes one standard pickle (``pickle.dump(item, stream)``, pickle's
    default protocol); ``close()`` flushes and closes the stream, which the reading end
    sees as EOF. Anything that loads pickles one by one from a stream can read it, a
    Coprocess in particular.
    Nothing comes back: no results, no errors. A reader that died shows up as
    BrokenPipeError from a later send or from close.

    >>> import io
    >>> sink = io.BytesIO()
    >>> sender = CoprocessSender(sink)
    >>> sender.send((1, "one"))
    >>> pickle.loads(sink.getvalue())
    (1, 'one')
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def send(self, item: Any, _dump=pickle.dump) -> None:
        # pickle.dump bound as a default argument: the per-item cost stays within ~15% of a
        # bare pickle.dump loop (bench/bench_coprocess.py measures it).
        _dump(item, self._stream)

    def close(self) -> None:
        """Flush and close the stream; idempotent."""
        if not self._stream.closed:
            self._stream.close()

    def __enter__(self) -> "CoprocessSender":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Coprocess:
    """Run ``consumer`` on every pickle read from the binary stream ``stream``.

    ``run()`` loads pickles until EOF, sends each object to the consumer in order, then
    closes the consumer; results (non-None values of send() and close()) go to
    ``results.send`` when ``results`` is given. A stream that ends in the middle of a pickle
    raises ProtocolError (the consumer is then not closed); an exception from the consumer
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
        self._allowed = None if allowed is None else wire._permits(allowed)

    def run(self) -> None:
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
                    raise ProtocolError("the stream ended inside a pickle") from None
                break
            except ProtocolError:
                raise  # a global refused by ``allowed``
            except Exception as exc:
                raise ProtocolError(f"unreadable pickle in the stream: {type(exc).__name__}: "
                                    f"{exc}") from exc
            result = send(item)
            if result is not None and forward is not None:
                forward(result)
        result = self._consumer.close()
        if result is not None and forward is not None:
            forward(result)


# -- The framed protocol, sending end -------------------------------------------------------

# Batches start small and grow (at most 4x per frame) towards frames of about _FRAME_BYTES,
# so small items travel a few thousand to a frame and a large item travels alone at once.
_FIRST_BATCH = 64
_MAX_BATCH = 4096
_FRAME_BYTES = 1 << 16


class _Link:
    """The sending end of one framed channel, and its two threads: a reader that takes
    acknowledgements, results and errors from the peer, and a flusher that writes a batch
    no later than FLUSH_INTERVAL after its first item arrived. RemoteConsumer is its public
    face; the threads hold only this object, so a forgotten RemoteConsumer can still be
    garbage-collected and its coprocess ended."""

    def __init__(self, channel: wire.Channel, *, pid: int | None, process=None, results=None,
                 where: str, expect_hello: bool, cleanups=()):
        self.channel = channel
        self.pid = pid
        self.process = process
        self.results = results
        self.where = where
        self.cleanups = list(cleanups)
        self.batch: list = []
        self.batch_size = _FIRST_BATCH
        # send() appends, then takes the slow path (on_fill) when len(batch) >= limit:
        # batch_size normally; 1 while the batch is empty, so that the item that starts a
        # batch wakes the flusher; 0 once halted (closed or failed), so send() raises.
        self.limit = 1
        self.taken = 0            # items taken out of the batch to be written
        self.flushes = 0
        self.last_flush = 0.0
        self.acknowledged = 0
        self.halted = False       # closed, failed or the writer broke: send() must refuse
        self.closed = False
        self.finished = False
        self.done = False         # the peer said DONE
        self.writer_broken = False
        self.failure: BaseException | None = None
        self.failure_raised = False
        self.stopping = False
        self.reader_closes_channel = False
        # Opened by the reader as it leaves. close() waits on this rather than on
        # Thread.join(): on 3.11 and 3.12 a join interrupted by Ctrl-C marks the thread
        # stopped while it still runs (bpo-45274), so a later join would not wait for it.
        self.reader_done = _Gate()
        self.write_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.wake = threading.Event()
        label = f"gilstudy-coprocess-{pid if pid is not None else where}"
        self.reader = threading.Thread(target=self._read_loop, args=(expect_hello,),
                                       name=f"{label}-reader", daemon=True)
        self.flusher = threading.Thread(target=self._flush_loop, name=f"{label}-flusher",
                                        daemon=True)
        self.reader.start()
        self.flusher.start()

    @property
    def sent(self) -> int:
        return self.taken + len(self.batch)

    # Failures -------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` as the failure, unless one was recorded first."""
        with self.state_lock:
            if self.failure is None:
                self.failure = exc
            self._halt()

    def _halt(self) -> None:
        # With state_lock held.
        self.halted = True
        self.limit = 0

    def raise_failure(self):
        exc = self.failure
        self.failure_raised = True
        if isinstance(exc, (RemoteError, CoprocessDied, CoprocessStalled)):
            # Facts of this moment; the traceback of an earlier raise would only mislead.
            exc._set_counts(self.sent, self.acknowledged)
            raise exc.with_traceback(None)
        raise exc

    def stall(self, detail: str):
        """A call's deadline passed while the peer did not keep up: record and raise
        CoprocessStalled (or the failure recorded first)."""
        self.fail(CoprocessStalled(self.pid, detail))
        self.raise_failure()

    def on_fill(self, timeout: float | None) -> None:
        """send()'s slow path: the batch is full, or just started, or the link halted."""
        if self.halted:
            # Take back the refused item. Nothing takes items from a halted batch, but a
            # flush under way as the link halted may have taken it (and the batch with it).
            if self.batch:
                self.batch.pop()
            self.refuse()
        if len(self.batch) >= self.batch_size:
            self.flush(_deadline(timeout), "send()", timeout)
            if self.halted:
                self.refuse()
            return
        self.wake.set()
        with self.state_lock:
            # Unless the flusher took the batch meanwhile (and set limit to 1 again).
            if not self.halted and self.batch:
                self.limit = self.batch_size

    def refuse(self):
        """The link halted: raise why."""
        if self.failure is None and self.writer_broken:
            # A write failed and the reader has not yet said why: it sees the EOF next.
            if threading.current_thread() is not self.reader:
                self.reader.join(EXIT_TIMEOUT + 1)
            self.fail(CoprocessDied(self.pid, self._exitcode(0), f"its {self.where} broke"))
        if self.failure is not None:
            self.raise_failure()
        raise ValueError(f"send() on a closed {self._describe()}")

    def _describe(self) -> str:
        return f"coprocess {self.pid}" if self.pid is not None else f"coprocess at {self.where}"

    def _exitcode(self, timeout: float) -> int | None:
        if self.process is None or not _reap(self.process, timeout):
            return None
        return self.process.returncode

    # Writing --------------------------------------------------------------------------

    def _lock_writes(self, deadline: float | None, caller: str, timeout: float | None):
        """Take write_lock by ``deadline``, or stall: another thread's write (the
        flusher's) is waiting for the peer to read."""
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.write_lock.acquire(timeout=wait):
            self.stall(f"{caller} waited {timeout:g} s for it to read a frame")

    def flush(self, deadline: float | None = None, caller: str = "flush()",
              timeout: float | None = None) -> None:
        """Write the batch as ITEMS frames now (nothing when empty or after a failure): one
        frame unless it would exceed what the peer accepts. Past ``deadline`` (for
        ``caller``, given ``timeout``) raises CoprocessStalled, recorded as the failure."""
        self._lock_writes(deadline, caller, timeout)
        try:
            batch = self.batch
            count = len(batch)
            if not count or self.failure is not None or self.writer_broken:
                return
            with self.state_lock:
                # Before the take: an item appended after it starts a new batch.
                if not self.halted:
                    self.limit = 1
            # The producer may append while this runs: take exactly the first ``count``.
            chunk = batch[:count]
            del batch[:count]
            # Again after the take: an on_fill() running meanwhile may have raised the limit
            # while the taken items were still there, and an item appended by a send() that
            # read the old limit called no on_fill. Either would leave items waiting for the
            # next send() or close() (a real window without the GIL).
            with self.state_lock:
                if not self.halted:
                    self.limit = 1
                has_leftovers = bool(batch)
            if has_leftovers:
                self.wake.set()
            self.taken += count
            self.flushes += 1
            self.last_flush = time.monotonic()
            try:
                frames = wire.dumps_in_frames(chunk, self.channel.peer_max_frame)
            except Exception as exc:
                self._unpicklable(chunk, exc)
                return
            try:
                self.channel.write_frames([(wire.ITEMS, payload, buffers)
                                           for payload, buffers in frames], deadline)
            except TimeoutError:
                # The frame may be half written: nothing more can go on this channel.
                self.stall(f"{caller} waited {timeout:g} s for it to read a frame")
            except OSError:
                with self.state_lock:
                    self.writer_broken = True
                    self._halt()
                return
            per_item = sum(wire.frame_size(*frame) for frame in frames) / count
            self.batch_size = max(1, min(_MAX_BATCH, self.batch_size * 4,
                                         int(_FRAME_BYTES / per_item)))
        finally:
            self.write_lock.release()

    def _unpicklable(self, chunk: list, exc: Exception) -> None:
        first = self.taken - len(chunk)
        index = getattr(exc, "index", None)
        if index is not None:
            # Too large for a frame: the index is the item's place in ``chunk``.
            first += index
            exc = ProtocolError(f"item number {first} sent to {self._describe()} pickles to "
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
        exc.add_note(f"gilstudy: item number {first} sent to {self._describe()} could not be "
                     "pickled; the coprocess was abandoned with its consumer unclosed")
        self.fail(exc)

    def _flush_loop(self) -> None:
        # Woken when the batch goes from empty to one item. A lone item after a quiet
        # spell leaves at once; otherwise the batch waits until FLUSH_INTERVAL after the
        # previous frame, unless the producer filled and flushed it meanwhile. Its writes
        # have no deadline: a stalled peer holds it until the link fails or ends, which
        # cancels them.
        wake = self.wake
        while True:
            wake.wait()
            wake.clear()
            if self.stopping:
                return
            seen = self.flushes
            delay = self.last_flush + FLUSH_INTERVAL - time.monotonic()
            if delay > 0:
                time.sleep(delay)
                if self.stopping:
                    return
            if self.flushes == seen:
                self.flush()

    def _release_flusher(self) -> None:
        self.stopping = True
        self.wake.set()

    # Reading --------------------------------------------------------------------------

    def _read_loop(self, expect_hello: bool) -> None:
        channel = self.channel
        try:
            if expect_hello:
                wire.read_hello(channel)
            while True:
                kind, payload = channel.read_frame()
                if kind == wire.ACK:
                    (self.acknowledged,) = wire.ACK_BODY.unpack(payload)
                elif kind == wire.RESULTS:
                    self._forward(payload)
                elif kind == wire.ERROR:
                    self.fail(RemoteError(*wire.decode_error(channel, payload)))
                elif kind == wire.DONE:
                    self.done = True
                    return
                else:
                    raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame from "
                                        f"{self._describe()}")
        except (EOFError, OSError):
            self.fail(CoprocessDied(self.pid, self._exitcode(EXIT_TIMEOUT),
                                    f"its {self.where} closed before the consumer was closed"))
        except ProtocolError as exc:
            self.fail(exc)
        except Exception as exc:  # a malformed ACK (struct.error)
            self.fail(ProtocolError(f"malformed frame from {self._describe()}: {exc}"))
        finally:
            if self.reader_closes_channel:
                self.channel.close()
            self.reader_done.open()

    def _forward(self, payload) -> None:
        if self.results is None:
            return
        try:
            values = self.channel.load(payload)
        except ProtocolError as exc:
            exc.add_note(f"gilstudy: a result from {self._describe()} could not be unpickled")
            self.results = None
            self.fail(exc)
            return
        send = self.results.send
        try:
            for value in values:
                send(value)
        except Exception as exc:
            exc.add_note(f"gilstudy: raised by the results consumer of {self._describe()}")
            self.results = None
            self.fail(exc)

    # Ending ---------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        if self.finished:
            return
        deadline = _deadline(timeout)
        if not self.closed:
            with self.state_lock:
                self.closed = True
                self._halt()
            self._release_flusher()
            if self.failure is None:
                self._say_close(deadline, timeout)
        if self.failure is None and not self.writer_broken:
            # The consumer handles what is left, closes, says DONE.
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.reader_done.wait(wait):
                self.stall(f"close() waited {timeout:g} s for its consumer to handle the "
                           "items sent and close")
        self._finish(terminate=False)
        if self.failure is None and not self.done:
            self.fail(CoprocessDied(self.pid, self._exitcode(0),
                                    f"its {self.where} closed before the consumer was closed"))
        if self.failure is not None and not self.failure_raised:
            self.raise_failure()

    def _say_close(self, deadline: float | None, timeout: float | None) -> None:
        """Write what is left of the batch and CLOSE, then close the writing side."""
        self.flush(deadline, "close()", timeout)
        self._lock_writes(deadline, "close()", timeout)
        try:
            if self.failure is None and not self.writer_broken:
                try:
                    self.channel.write_frame(wire.CLOSE, deadline=deadline)
                except TimeoutError:
                    self.stall(f"close() waited {timeout:g} s for it to read a frame")
                except OSError:
                    self.writer_broken = True
            self.channel.close_writer()
        finally:
            self.write_lock.release()

    def abort(self) -> None:
        if self.finished:
            return
        with self.state_lock:
            self.closed = True
            self._halt()
        self._finish(terminate=True)

    def _finish(self, terminate: bool) -> None:
        """End the peer (politely unless ``terminate``), join both threads, close the
        channel and remove what the transport left behind. Every step may run twice, so
        abort() can finish what an interrupted close() began."""
        self._release_flusher()
        if terminate or self.failure is not None:
            # A write waiting for a peer that no longer reads gives up (within 50 ms).
            self.channel.cancel_writes()
        if threading.current_thread() is not self.flusher:
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
        process = self.process
        if process is not None:
            if terminate and process.poll() is None:
                process.terminate()
            if not _reap(process, EXIT_TIMEOUT):
                process.kill()
                process.wait()
        if terminate or process is None:
            # Wakes a reader or writer blocked on a socket; pipes broke with the process.
            self.channel.shutdown()
        if threading.current_thread() is not self.flusher:
            self.flusher.join()
        if threading.current_thread() is not self.reader:
            self.reader.join()
            self.channel.close()
        else:
            # Garbage collection ran the finalizer in the reader thread itself: the reader
            # closes the channel on its way out.
            self.reader_closes_channel = True
        for cleanup in self.cleanups:
            cleanup()
        self.finished = True



class _Gate:
    """A one-way door: closed until open() is called, then open for good. wait() uses a
    plain lock, because Ctrl-C interrupts a lock's acquire cleanly, while an Event's
    Condition can be left inconsistent by an interrupt on the free-threaded build."""

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()

    def open(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """True once open; False if ``timeout`` seconds passed first."""
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._lock.release()
        return True

def _check_timeout(who: str, timeout: float | None) -> None:
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"{who}: timeout must be a positive number of seconds or None, "
                         f"got {timeout!r}")


def _deadline(timeout: float | None) -> float | None:
    """time.monotonic() at which ``timeout`` seconds from now end; None for no timeout."""
    if timeout is None:
        return None
    _check_timeout("send", timeout)
    return time.monotonic() + timeout


def _reap(process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``process`` to exit and reap it; return whether
    it did. Popen.wait(timeout) polls with growing sleeps, which would add milliseconds to
    every close(); a pidfd (Linux 5.3+) wakes us the moment the process exits."""
    if process.returncode is not None:
        return True
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(process.pid)
        except OSError:
            pass  # an older kernel (or already reaped): fall back to polling
        else:
            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                if not poller.poll(timeout * 1000):
                    return False
            finally:
                os.close(pidfd)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


class RemoteConsumer:
    """A consumer running in another process, fed through a framed channel; spawn() and
    connect() make them.

    ``send(item)`` appends the item to a batch: nothing is pickled or written per item. A
    full batch (sized to make frames of about 64 KiB) is pickled and written by the send
    that fills it, and a flusher thread writes a partial batch no later than FLUSH_INTERVAL
    (5 ms) after its first item. Results (non-None values of the remote consumer's send()
    and close()) are passed to ``results.send`` from a reader thread, in order.

    Items are pickled when their batch is written, not by send(): do not change an item
    after sending it. Contiguous numpy arrays (and anything else that pickles with
    protocol-5 out-of-band buffers) of 64 KiB or more travel beside the pickle, not copied
    into it, and arrive in fresh buffers of their own.

    Trouble: when the remote consumer raises, the next send() or close() raises
    RemoteError (remote type name and traceback inside); when the process dies or the
    connection drops, CoprocessDied (exit code or signal); when a timeout given to send(),
    flush() or close() passes while the peer does not keep up, CoprocessStalled (a
    TimeoutError). All three carry how many items were sent and how many the consumer
    acknowledged: the items after ``acknowledged`` are the ones to send again. close()
    raises such a failure only if no send() raised it before. An item that cannot be
    pickled, or that alone is larger than the frame limit, abandons the coprocess: send()
    or close() raises the pickling error (or ProtocolError), with a note naming the item.
    Leaving a ``with`` block on an exception aborts instead of closing. One producer
    thread at a time may call send().
    """

    def __init__(self, link: _Link):
        self._link = link
        self._batch = link.batch
        self._finalizer = weakref.finalize(self, link.abort)

    @property
    def pid(self) -> int | None:
        """The process running the consumer (for connect(): the server's process)."""
        return self._link.pid

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
        return self._link.closed

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Queue ``item`` for the remote consumer; see the class docstring for failures.

        Most calls only append to the batch; the one that fills it writes it, and waits
        while the peer does not read. With ``timeout`` (seconds) that wait ends with
        CoprocessStalled; without, it lasts as long as the peer stalls."""
        # The hot path is an append and two comparisons; see _Link.limit. A bad timeout is
        # refused at once, not when a later call happens to write the batch.
        if timeout is not None:
            _check_timeout("send", timeout)
        batch = self._batch
        batch.append(item)
        if len(batch) >= self._link.limit:
            self._link.on_fill(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Write the items queued so far now, instead of within FLUSH_INTERVAL; ``timeout``
        as for send()."""
        _check_timeout("flush", timeout)
        link = self._link
        if link.halted:
            link.refuse()
        link.flush(_deadline(timeout), "flush()", timeout)

    def close(self, timeout: float | None = None) -> None:
        """Wait until the remote consumer has handled every item sent, close it (its
        close() result arrives as a result), end the process (kill it if it takes longer
        than EXIT_TIMEOUT to exit) and raise the failure if there was one that no send()
        raised. Idempotent: once it has returned, a second close() does nothing.

        With ``timeout`` (seconds), when the peer has not read everything, or its consumer
        not finished, by then, close() raises CoprocessStalled and leaves the coprocess as
        it is; a later close() ends it (within EXIT_TIMEOUT, killing it if need be) and
        abort() ends it at once. Without, close() waits as long as the consumer works."""
        _check_timeout("close", timeout)
        link = self._link
        try:
            link.close(timeout)
        except BaseException as exc:
            if exc is not link.failure:
                # Interrupted (Ctrl-C) while waiting: end the coprocess now.
                link.abort()
            raise
        finally:
            if link.finished:
                self._finalizer.detach()

    def abort(self) -> None:
        """Drop the remote consumer now, unclosed: items not yet handled are lost, a spawned
        process is terminated (killed after EXIT_TIMEOUT), no failure is raised."""
        self._finalizer.detach()
        self._link.abort()

    def __enter__(self) -> "RemoteConsumer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __reduce__(self):
        raise TypeError("a RemoteConsumer cannot be pickled: it owns a live channel")

    def __repr__(self) -> str:
        link = self._link
        state = "closed" if link.closed else "open"
        return (f"<RemoteConsumer pid={link.pid} over {link.where}, {state}, "
                f"{link.sent} sent, {link.acknowledged} acknowledged>")


# -- Transports for spawn() -----------------------------------------------------------------

def _wait_until(ready: Callable[[float], bool], process: subprocess.Popen, what: str,
                deadline: float | None = None) -> None:
    """Call ``ready(timeout)``, which waits up to ``timeout`` seconds for the child, until it
    returns true; raise CoprocessDied if ``process`` ends first or is not ready by
    ``deadline`` (START_TIMEOUT from now by default; the caller then kills it). ``what``
    completes "before ..."."""
    if deadline is None:
        deadline = time.monotonic() + START_TIMEOUT
    while not ready(0.05):
        if process.poll() is not None:
            raise CoprocessDied(process.pid, process.returncode, f"it ended before {what}")
        if time.monotonic() > deadline:
            raise CoprocessDied(process.pid, None,
                                f"{START_TIMEOUT:g} s passed before {what}; it was killed")


# Each transport prepares what the child needs (prepare(): its arguments after the frame
# limit, and the descriptors it inherits), then opens the parent's end once the child runs
# (connect()); ``handshakes`` tells whether connect() has also done the handshake.

class _PipeTransport:
    """Two anonymous pipes, the child's ends passed with pass_fds."""

    name = "pipe"
    handshakes = False

    def __init__(self):
        self._parent_fds: list[int] = []
        self._child_fds: list[int] = []

    def prepare(self) -> tuple[list[str], tuple[int, ...]]:
        items_r, items_w = os.pipe()
        replies_r, replies_w = os.pipe()
        self._parent_fds = [replies_r, items_w]
        self._child_fds = [items_r, replies_w]
        _grow_pipe(items_w)
        _grow_pipe(replies_w)
        return ["-", str(items_r), str(replies_w)], (items_r, replies_w)

    def connect(self, process: subprocess.Popen, options: dict, flags: int) -> wire.Channel:
        self._close_child_fds()
        replies_r, items_w = self._parent_fds
        self._parent_fds = []
        return _spawned_channel(wire.Channel.from_fds(replies_r, items_w, **options))

    def _close_child_fds(self) -> None:
        while self._child_fds:
            os.close(self._child_fds.pop())

    def cleanup(self) -> None:
        self._close_child_fds()
        while self._parent_fds:
            os.close(self._parent_fds.pop())


def _spawned_channel(channel: wire.Channel) -> wire.Channel:
    # The child's frame limit is ours (spawn passed it): frames may go before its HELLO.
    channel.peer_max_frame = channel.max_frame
    return channel


def _grow_pipe(fd: int) -> None:
    # A 1 MiB pipe (the unprivileged Linux maximum) lets the producer run further ahead of
    # the consumer before a write blocks, and moves large arrays in fewer, longer copies;
    # where that is refused, the default 64 KiB works.
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass


_fifo_numbers = itertools.count()


class _FifoTransport:
    """Two named pipes, ``coprocess-PID-N.items`` and ``.replies``, in ``path`` (a fresh
    temporary directory by default), readable and writable by this user only. Both are
    removed as soon as the two ends have opened them, so nothing is left behind even if a
    process is killed later."""

    name = "FIFO"
    handshakes = False

    def __init__(self, path):
        if path is None:
            self._directory = tempfile.mkdtemp(prefix="gilstudy-fifo-")
            self._owns_directory = True
        else:
            self._directory = os.fspath(path)
            self._owns_directory = False
            if not os.path.isdir(self._directory):
                raise NotADirectoryError(f"spawn: path must be an existing directory for the "
                                         f"FIFOs, got {self._directory!r}")
        stem = os.path.join(self._directory, f"coprocess-{os.getpid()}-{next(_fifo_numbers)}")
        self._items = stem + ".items"
        self._replies = stem + ".replies"
        self._made: list[str] = []
        self._fds: list[int] = []

    def prepare(self) -> tuple[list[str], tuple[int, ...]]:
        for fifo in (self._items, self._replies):
            os.mkfifo(fifo, 0o600)
            self._made.append(fifo)
        # Our read end opens at once without blocking; it turns blocking once the child's
        # HELLO shows that its write end is open (before that a read would see EOF).
        self._fds.append(os.open(self._replies, os.O_RDONLY | os.O_NONBLOCK))
        return ["-", self._items, self._replies], ()

    def connect(self, process: subprocess.Popen, options: dict, flags: int) -> wire.Channel:
        replies_r = self._fds[0]

        def items_open(timeout: float) -> bool:
            # Opening a FIFO cannot wait with a timeout: try every millisecond.
            pause = time.monotonic() + timeout
            while True:
                try:
                    self._fds.append(os.open(self._items, os.O_WRONLY | os.O_NONBLOCK))
                except OSError as exc:
                    if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                        raise
                    if time.monotonic() > pause:
                        return False
                    time.sleep(0.001)
                else:
                    return True

        _wait_until(items_open, process, "it opened its FIFOs")
        poller = select.poll()
        poller.register(replies_r, select.POLLIN)
        _wait_until(lambda timeout: bool(poller.poll(timeout * 1000)), process,
                    "it opened its FIFOs")
        items_w = self._fds[1]
        os.set_blocking(replies_r, True)
        _grow_pipe(items_w)
        self._fds = []
        self._remove()
        return _spawned_channel(wire.Channel.from_fds(replies_r, items_w, **options))

    def _remove(self) -> None:
        while self._made:
            try:
                os.unlink(self._made.pop())
            except FileNotFoundError:
                pass
        if self._owns_directory:
            self._owns_directory = False
            os.rmdir(self._directory)

    def cleanup(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        self._remove()


class _SocketTransport:
    """TCP: this process listens on ``address`` (loopback, ephemeral port by default) and
    the child connects back; the listening socket closes once it has. The two prove to
    each other that they hold a fresh random key, which the child reads from a pipe it
    inherits (not from its command line or environment, which others may read); a
    stranger who connects first is logged and dropped, and the wait for the child goes
    on."""

    name = "socket"
    handshakes = True

    def __init__(self, address):
        self._address = address if address is not None else ("127.0.0.1", 0)
        self._listener: socket.socket | None = None
        self._key_fd: int | None = None
        self._authkey = os.urandom(32)

    def prepare(self) -> tuple[list[str], tuple[int, ...]]:
        self._listener = socket.create_server(self._address, family=_family(self._address[0]))
        host, port = self._listener.getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.name = f"socket {_format_address(host, port)}"
        key_r, key_w = os.pipe()
        self._key_fd = key_r
        with open(key_w, "wb") as pipe:
            pipe.write(self._authkey)  # far below a pipe's capacity: never blocks
        return [str(key_r), host, str(port)], (key_r,)

    def connect(self, process: subprocess.Popen, options: dict, flags: int) -> wire.Channel:
        self._close_key()
        listener = self._listener
        deadline = time.monotonic() + START_TIMEOUT
        accepted = []

        def accept(timeout: float) -> bool:
            listener.settimeout(timeout)
            try:
                accepted.append(listener.accept())
            except TimeoutError:
                return False
            return True

        while True:
            _wait_until(accept, process, "it connected back", deadline)
            conn, peer = accepted.pop()
            channel = _open_socket(conn, options,
                                   max(0.05, min(CONNECT_TIMEOUT, deadline - time.monotonic())))
            try:
                wire.handshake(channel, pid=os.getpid(), flags=flags, authkey=self._authkey,
                               accepting=True)
            except (AuthenticationError, ProtocolError, EOFError, OSError) as exc:
                channel.close()
                _log.warning("gilstudy spawn: refused a connection to %s from %s: %s",
                             self.name, _format_address(*peer[:2]), _describe_error(exc))
                continue
            conn.settimeout(None)
            self.cleanup()
            return channel

    def _close_key(self) -> None:
        if self._key_fd is not None:
            os.close(self._key_fd)
            self._key_fd = None

    def cleanup(self) -> None:
        self._close_key()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _open_socket(sock: socket.socket, options: dict, timeout: float | None) -> wire.Channel:
    """A channel over the connected ``sock``, whose reads and writes time out after
    ``timeout`` seconds until the handshake is done (the caller then clears it)."""
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return wire.Channel.from_socket(sock, **options)


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, CoprocessStalled):
        return "no handshake in time"
    if isinstance(exc, EOFError):
        return "it closed the connection before its HELLO"
    if isinstance(exc, (AuthenticationError, ProtocolError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_factory(factory: Callable) -> None:
    if not callable(factory):
        raise TypeError(f"spawn: factory must be callable, got {factory!r}")
    if getattr(factory, "__module__", None) == "__main__":
        raise ValueError(
            f"spawn: factory {getattr(factory, '__qualname__', factory)!r} is defined in "
            "__main__, which a coprocess cannot import; define it in a module")


def _channel_options(who: str, max_frame: int, allowed) -> dict:
    """Check max_frame and allowed for ``who`` before anything starts; the Channel options."""
    if not isinstance(max_frame, int) or isinstance(max_frame, bool):
        raise TypeError(f"{who}: max_frame must be an int (bytes), got {max_frame!r}")
    if max_frame < 1024:
        raise ValueError(f"{who}: max_frame must be at least 1024 bytes, got {max_frame}")
    try:
        wire.restricted_loads(allowed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{who}: {exc}") from None
    return {"max_frame": max_frame, "allowed": allowed}


def _resolve_key(who: str, authkey: bytes | None, insecure: bool) -> bytes | None:
    """The key a socket end authenticates with: ``authkey``, else GILSTUDY_AUTHKEY's bytes;
    None with ``insecure``. Raises ValueError when there is none and insecure is false."""
    if insecure:
        if authkey is not None:
            raise ValueError(f"{who}: pass authkey or insecure=True, not both")
        return None
    if authkey is None:
        value = os.environ.get(AUTHKEY_ENV)
        if not value:
            raise ValueError(
                f"{who}: a socket needs a key: pass authkey=b'...' or set {AUTHKEY_ENV} (the "
                "same on both ends); insecure=True goes without one, and then anyone who "
                "can connect can run code in this process")
        return os.fsencode(value)
    if not isinstance(authkey, (bytes, bytearray, memoryview)):
        raise TypeError(f"{who}: authkey must be bytes, got {type(authkey).__name__}")
    if not len(authkey):
        raise ValueError(f"{who}: authkey must not be empty")
    return bytes(authkey)


def spawn(factory: Callable, *args: Any, transport: str = "pipe", path=None, address=None,
          results: Any = None, max_frame: int = MAX_FRAME, allowed=None) -> RemoteConsumer:
    """Start a new Python interpreter that runs the consumer ``factory(*args)``; return the
    RemoteConsumer that feeds it.

    ``factory`` and ``args`` are pickled here (``factory`` by reference: it must be
    importable by its module name, not defined in ``__main__``) and the child, started with
    ``sys.executable -m gilstudy._coprocess_child``, first takes this process's sys.path.
    Its standard input, output and error are this process's. ``transport`` is "pipe"
    (anonymous pipes), "fifo" (two named pipes in directory ``path``, by default a fresh
    temporary directory, removed as soon as both ends opened them) or "socket" (this
    process listens on ``address``, by default 127.0.0.1 on an ephemeral port, and the
    child connects back, proving that it holds the fresh random key spawn handed it). For
    "pipe" spawn returns at once; for the others once the child has opened its end,
    raising CoprocessDied if it ends first or takes more than START_TIMEOUT. Non-None
    results of the consumer go to ``results.send``, from a reader thread; ``results.send``
    must not wait for the thread that calls ``send`` here.

    ``max_frame`` (bytes, 64 MiB by default) bounds each frame both ways: a batch of items,
    a batch of results, their out-of-band buffers included. With ``allowed`` (see
    gilstudy.wire.RestrictedUnpickler) results load only the globals it permits.

        from gilstudy.kernels.work import KernelConsumer
        with spawn(KernelConsumer, "count_primes", "cython", results=collect) as worker:
            for index in range(100):
                worker.send((index, (0, 10_000)))
        # collect got (index, 1229) for every index
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"spawn: transport must be one of {', '.join(TRANSPORTS)}, "
                         f"got {transport!r}")
    if path is not None and transport != "fifo":
        raise ValueError(f"spawn: path is for transport='fifo', not {transport!r}")
    if address is not None and transport != "socket":
        raise ValueError(f"spawn: address is for transport='socket', not {transport!r}")
    _check_factory(factory)
    options = _channel_options("spawn", max_frame, allowed)
    # Pickled before anything starts, so an unpicklable factory or argument fails here.
    call = pickle.dumps((factory, args), wire.PICKLE_PROTOCOL)
    setup = pickle.dumps((sys.path, call), wire.PICKLE_PROTOCOL)
    if len(setup) > max_frame:
        raise ValueError(f"spawn: the factory and its arguments pickle to {len(setup)} bytes, "
                         f"more than max_frame ({max_frame})")
    if transport == "pipe":
        opener = _PipeTransport()
    elif transport == "fifo":
        opener = _FifoTransport(path)
    else:
        opener = _SocketTransport(address)
    flags = wire.WANT_RESULTS if results is not None else 0
    process = None
    try:
        where, pass_fds = opener.prepare()
        process = subprocess.Popen([sys.executable, "-m", "gilstudy._coprocess_child",
                                    transport, str(max_frame), *where], pass_fds=pass_fds)
        channel = opener.connect(process, options, flags)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        opener.cleanup()
        raise
    try:
        if not opener.handshakes:
            wire.send_hello(channel, os.getpid(), flags)
        channel.write_frame(wire.SETUP, setup)
    except OSError:
        # The child died at once; its reader thread will tell how (CoprocessDied).
        broken = True
    else:
        broken = False
    link = _Link(channel, pid=process.pid, process=process, results=results,
                 where=opener.name, expect_hello=not opener.handshakes,
                 cleanups=[opener.cleanup])
    if broken:
        with link.state_lock:
            link.writer_broken = True
            link._halt()
    return RemoteConsumer(link)


def coprocesses(factory: Callable, n: int, *args: Any, transport: str = "pipe",
                results: Any = None, max_frame: int = MAX_FRAME, allowed=None) -> "Dispatch":
    """``n`` coprocesses, each running its own ``factory(*args)``, behind one Dispatch: the
    process twin of :func:`gilstudy.consumers.threads`.

    Every item goes to the coprocess with the fewest unacknowledged items. Give a
    thread-safe ``results`` (such as :class:`gilstudy.consumers.Collect`): each coprocess's
    reader thread sends to it. ``max_frame`` and ``allowed`` are spawn()'s. If starting one
    fails, those already started are ended and the error is raised.

        from gilstudy.consumers import Collect
        from gilstudy.kernels.work import KernelConsumer
        results = Collect()
        with coprocesses(KernelConsumer, 2, "count_primes", "python", results=results) as fan:
            for index in range(8):
                fan.send((index, (index * 1000, index * 1000 + 1000)))
        # results.items holds (index, count) for all eight ranges, in arrival order
    """
    from gilstudy.consumers import Dispatch

    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"coprocesses: n must be an int, got {n!r} ({type(n).__name__})")
    if n < 1:
        raise ValueError(f"coprocesses: n must be >= 1, got {n}")
    started: list[RemoteConsumer] = []
    try:
        for _ in range(n):
            started.append(spawn(factory, *args, transport=transport, results=results,
                                 max_frame=max_frame, allowed=allowed))
    except BaseException:
        for worker in started:
            worker.abort()
        raise
    return Dispatch(started)


def connect(address: tuple[str, int], results: Any = None, *, authkey: bytes | None = None,
            insecure: bool = False, allowed=None, max_frame: int = MAX_FRAME,
            timeout: float | None = CONNECT_TIMEOUT) -> RemoteConsumer:
    """Connect to a server started by serve() (or ``gilstudy serve``) at ``(host, port)``;
    return the RemoteConsumer that feeds the consumer the server builds for this
    connection. ``pid`` is the server's process.

    Both ends prove that they hold the same key before anything is unpickled: ``authkey``
    (bytes), else the bytes of the environment variable GILSTUDY_AUTHKEY; without either
    connect raises ValueError, unless ``insecure=True`` (for a server started with
    insecure=True: no key, and anyone who can reach either end can run code in it).
    ``allowed`` restricts what results may load (see gilstudy.wire.RestrictedUnpickler);
    ``max_frame`` bounds each frame this end reads (the server says what it reads).

    Raises OSError (ConnectionRefusedError...) if nothing listens there, TimeoutError if the
    server has not accepted the connection and finished the handshake within ``timeout``
    seconds (None: wait for ever), AuthenticationError if the server refuses our key or
    fails to prove its own, ProtocolError if the peer is not a gilstudy server, and
    CoprocessDied if it closes the connection before its HELLO.
    """
    authkey = _resolve_key("connect", authkey, insecure)
    options = _channel_options("connect", max_frame, allowed)
    _check_timeout("connect", timeout)
    host, port = address
    where = _format_address(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"connect: {where} did not accept the connection within "
                           f"{timeout:g} s") from None
    channel = _open_socket(sock, options, timeout)
    try:
        hello = wire.handshake(channel, pid=os.getpid(),
                               flags=wire.WANT_RESULTS if results is not None else 0,
                               authkey=authkey, accepting=False)
    except EOFError:
        channel.close()
        raise CoprocessDied(None, None, f"the server at {where} closed the connection before "
                                        "its HELLO") from None
    except AuthenticationError as exc:
        channel.close()
        raise AuthenticationError(f"connect: the server at {where} did not accept: {exc}") \
            from None
    except TimeoutError:
        channel.close()
        raise TimeoutError(f"connect: the server at {where} did not finish the handshake "
                           f"within {timeout:g} s") from None
    except BaseException:
        channel.close()
        raise
    sock.settimeout(None)
    link = _Link(channel, pid=hello.pid, results=results, where=f"connection to {where}",
                 expect_hello=False)
    return RemoteConsumer(link)


# -- Serving: a consumer per connection -----------------------------------------------------

class CoprocessServer:
    """Listens on a TCP address and runs a consumer, built by ``factory(*args)``, for each
    connection, in a thread of its own, speaking the framed protocol; serve() makes one.

    ``address`` is the ``(host, port)`` it listens on (the real port when asked for 0).
    serve_forever() blocks until close(), which another thread or a signal handler may
    call; close() stops accepting, drops open connections (their consumers are abandoned,
    unclosed, once their current item is handled) and waits for their threads. A
    connection whose peer fails the handshake (no key, a wrong key, not gilstudy, silent
    for CONNECT_TIMEOUT) or breaks the protocol later (a frame too long, truncated or
    refused by ``allowed``) is logged on the ``gilstudy.coprocess`` logger and dropped; the
    server goes on serving the others.
    """

    def __init__(self, address: tuple[str, int], factory: Callable, args: tuple = (), *,
                 authkey: bytes | None = None, insecure: bool = False, allowed=None,
                 max_frame: int = MAX_FRAME):
        if not callable(factory):
            raise TypeError(f"serve: factory must be callable, got {factory!r}")
        self._authkey = _resolve_key("serve", authkey, insecure)
        self._options = _channel_options("serve", max_frame, allowed)
        self._factory = factory
        self._args = args
        self._listener = socket.create_server(address, family=_family(address[0]))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        # Every connection thread not yet known to have ended: close() joins them all,
        # including those that have left _connections but not yet returned.
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"gilstudy-serve-{self.address[1]}")
        self._acceptor.start()

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    conn, peer = self._listener.accept()
                except OSError:
                    continue  # the peer gave up before we accepted (ECONNABORTED)
                thread = threading.Thread(target=self._handle, args=(conn, peer), daemon=True,
                                          name=f"gilstudy-serve-{self.address[1]}-conn")
                with self._lock:
                    if self._closing:
                        conn.close()
                        return
                    self._connections[thread] = conn
                    self._threads = {t for t in self._threads if t.is_alive()}
                    self._threads.add(thread)
                thread.start()

    def _handle(self, conn: socket.socket, peer) -> None:
        channel = None
        try:
            channel = _open_socket(conn, self._options, CONNECT_TIMEOUT)
            hello = wire.handshake(channel, pid=os.getpid(), authkey=self._authkey,
                                   accepting=True)
            conn.settimeout(None)
            run_consumer(channel, lambda: self._factory(*self._args),
                         want_results=bool(hello.flags & wire.WANT_RESULTS))
        except AuthenticationError as exc:
            self._log("refused", peer, exc)
        except (ProtocolError, TimeoutError) as exc:
            self._log("dropped", peer, exc)
        except (PeerGone, EOFError, OSError):
            pass  # the client left
        finally:
            # Leave the table first: close() shuts down only sockets still in it, so it
            # never touches one closed here.
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
            if channel is not None:
                channel.close()
            else:
                conn.close()

    def _log(self, what: str, peer, exc: BaseException) -> None:
        _log.warning("gilstudy serve on %s: %s a connection from %s: %s",
                     _format_address(*self.address), what, _format_address(*peer[:2]),
                     _describe_error(exc))

    def serve_forever(self) -> None:
        """Block until close() (from another thread) or an exception such as
        KeyboardInterrupt; connections are served all the while."""
        self._closed.wait()

    def close(self) -> None:
        """Stop accepting, drop open connections, wait for their threads; idempotent."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
        if already:
            self._closed.wait()
            return
        self._wake_w.send(b"x")
        self._acceptor.join()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            for conn in self._connections.values():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self._closed.set()

    def __enter__(self) -> "CoprocessServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "serving"
        return f"<CoprocessServer on {_format_address(*self.address)}, {state}>"


def serve(address: tuple[str, int], factory: Callable, *args: Any,
          authkey: bytes | None = None, insecure: bool = False, allowed=None,
          max_frame: int = MAX_FRAME) -> CoprocessServer:
    """Listen on ``address`` (``(host, port)``; port 0 picks a free one) and run the
    consumer ``factory(*args)`` for each connection made with connect(); return the
    running CoprocessServer at once (see it for stopping).

    Items arrive pickled, and unpickling runs code the sender chooses, so every client
    first proves that it holds the key: ``authkey`` (bytes), else the bytes of the
    environment variable GILSTUDY_AUTHKEY; without either serve raises ValueError.
    ``insecure=True`` serves without a key: anyone who can connect can then run code in
    this process. ``allowed`` (a set of "module.qualname" strings or a callable, see
    gilstudy.wire.RestrictedUnpickler) limits what items may load, for clients trusted with
    the key but not with code; ``max_frame`` bounds each frame a client sends.
    """
    return CoprocessServer(address, factory, args, authkey=authkey, insecure=insecure,
                           allowed=allowed, max_frame=max_frame)


# -- The `gilstudy serve` command -----------------------------------------------------------

def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) → ``(host, port)``; ValueError otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {text!r}: port must be an integer, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {text!r}: port must be in 0..65535, got {port}")
    return host, port


def import_factory(text: str) -> Callable:
    """``"module:name"`` (``name`` may be dotted) → the callable it names. Raises
    ValueError for a malformed name, ImportError or AttributeError when it is missing."""
    import importlib

    module_name, sep, qualname = text.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"factory must be MODULE:NAME, got {text!r}")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"factory {text!r} is not callable")
    return obj


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run_serve(args) -> int:
    try:
        address = parse_address(args.address)
    except ValueError as exc:
        print(f"gilstudy serve: error: {exc}", file=sys.stderr)
        return 2
    # Like `python -m`, look for the factory's module in the current directory too.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = import_factory(args.factory)
    except Exception as exc:
        print(f"gilstudy serve: error: cannot import factory {args.factory!r}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not args.insecure and not os.environ.get(AUTHKEY_ENV):
        print(f"gilstudy serve: error: set {AUTHKEY_ENV} to the key clients will use, or pass "
              "--insecure to serve without one (anyone who can connect can then run code "
              "here)", file=sys.stderr)
        return 2
    if not _is_loopback(address[0]):
        if args.insecure:
            print(f"gilstudy serve: warning: {address[0]} is not a loopback address and "
                  "--insecure is on: whoever can connect can run code in this process",
                  file=sys.stderr)
        else:
            print(f"gilstudy serve: warning: {address[0]} is not a loopback address: the key "
                  "keeps strangers out, but the traffic is neither encrypted nor protected "
                  "from tampering on the way; tunnel it (SSH, TLS, WireGuard) across "
                  "networks you do not trust", file=sys.stderr)
    try:
        server = serve(address, factory, *args.args, insecure=args.insecure,
                       allowed=set(args.allow) if args.allow else None,
                       max_frame=args.max_frame)
    except ValueError as exc:
        print(f"gilstudy serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gilstudy serve: error: cannot listen on {args.address}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    with server:
        print(f"serving on {_format_address(*server.address)}", flush=True)
        server.serve_forever()
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy serve`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "serve", help="run a consumer for each connection to HOST:PORT",
        description="Listen on HOST:PORT and, for each connection made with "
                    "gilstudy.coprocess.connect(), build a consumer with FACTORY(*ARGS) "
                    "(ARGs are passed as strings; put -- before any that starts with -) "
                    "and feed it the items sent. Prints 'serving on HOST:PORT' once "
                    "listening; stop it with Ctrl-C. Items are pickles, which can run "
                    f"code: each client must first prove it holds the key in {AUTHKEY_ENV} "
                    "(its value's bytes; give connect() the same).")
    parser.add_argument("address", metavar="HOST:PORT",
                        help="where to listen; port 0 picks a free port")
    parser.add_argument("factory", metavar="MODULE:FACTORY",
                        help="importable callable that returns a consumer (looked up from "
                             "the current directory too)")
    parser.add_argument("args", nargs="*", metavar="ARG", help="arguments to FACTORY")
    parser.add_argument("--insecure", action="store_true",
                        help=f"serve without a key ({AUTHKEY_ENV} unset): anyone who can "
                             "connect can run code in this process")
    parser.add_argument("--allow", action="append", metavar="MODULE.NAME",
                        help="load only these globals from items (repeat for each; the "
                             "builtin containers and scalars need none)")
    parser.add_argument("--max-frame", type=int, default=MAX_FRAME, metavar="BYTES",
                        help=f"largest frame a client may send (default {MAX_FRAME})")
    parser.set_defaults(run=_run_serve)
