"""How a listening socket lets connections in, under limits: a cap on connections, one total
deadline for each handshake, back-off and a log line when accept() or starting a thread
fails, and a log that summarises repeated refusals. serve() and spawn()'s socket both
admit connections through it, so no stranger can hold either for long.
"""

import errno
import logging
import selectors
import socket
import threading
import time
from typing import Any, Callable

# Imported now rather than at first use (by the handshake's proof, and when a consumer's
# error is sent): a process out of file descriptors cannot open a module's file, and must
# still authenticate and report.
import hmac  # noqa: F401
import traceback  # noqa: F401

from gilstudy.errors import AuthenticationError, WorkerStalled, PeerGone, ProtocolError

__all__ = ["Admission", "RefusalLog", "MAX_CONNECTIONS", "LOG_INTERVAL", "format_address",
           "describe_refusal", "log_refusal"]

# Connections a server serves at once, by default: each holds a thread and a consumer.
MAX_CONNECTIONS = 64

# Log lines of one kind after the first are counted for this long (seconds), then summed
# up in one line.
LOG_INTERVAL = 10.0

# After accept() or a thread's start failed for want of resources, the listener rests
# this long (seconds), doubling up to _MAX_PAUSE while it keeps failing: long enough not
# to spin, short enough that a client is served within a second once resources free up.
_FIRST_PAUSE = 0.01
_MAX_PAUSE = 0.5

# accept() failures that mean this process or the system is out of something; the others
# (ECONNABORTED: the peer gave up first) concern one connection only.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Connections taken from the backlog in one turn, at most, so deadlines are still kept.
_ACCEPTS_PER_TURN = 64

# How long (seconds) the loop waits for a connection that gave way to be gone, before it
# retries the accept() or the thread's start that needed its room.
_DEPARTURE_WAIT = 0.2


def describe_refusal(exc: BaseException) -> str:
    """Why a connection was dropped before or during its handshake, for the log."""
    if isinstance(exc, TimeoutError) and not isinstance(exc, WorkerStalled):
        return "no handshake in time"
    if isinstance(exc, EOFError):
        return "it closed the connection before its HELLO"
    if isinstance(exc, (AuthenticationError, ProtocolError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def log_refusal(message: str, *args) -> None:
    """A warning on the ``gilstudy.coprocess`` logger, where every refused or dropped
    connection is reported."""
    logging.getLogger("gilstudy.coprocess").warning(message, *args)


def format_address(host: str, port: int) -> str:
    """``host:port`` as logs and messages write it (``[host]:port`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RefusalLog:
    """The warnings of one listener on the ``gilstudy.coprocess`` logger, summarised: the
    first of each kind is logged at once; the others of that kind in the next LOG_INTERVAL
    seconds are only counted, and one line then says how many there were and what the
    last one said. A flood of 2,000 wrong keys makes two lines, not 2,000."""

    def __init__(self, prefix: str, interval: float = LOG_INTERVAL):
        self._prefix = prefix
        self._interval = interval
        self._lock = threading.Lock()
        # kind -> [end of its window (time.monotonic()), lines counted, the last of them]
        self._windows: dict[str, list] = {}

    def note(self, kind: str, line: str) -> None:
        """Log ``line`` (after the prefix), unless a line of ``kind`` (a plural noun phrase:
        "connections refused for their key") was logged less than the interval ago."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(kind)
            if window is not None and now < window[0]:
                window[1] += 1
                window[2] = line
                return
            summary = self._summary(kind, window)
            self._windows[kind] = [now + self._interval, 0, None]
        if summary:
            log_refusal("%s", summary)
        log_refusal("%s: %s", self._prefix, line)

    def _summary(self, kind: str, window) -> str | None:
        if window is None or not window[1]:
            return None
        return (f"{self._prefix}: {window[1]} more {kind} in the last {self._interval:g} s; "
                f"the last: {window[2]}")

    def tick(self) -> float | None:
        """Log the summaries whose windows have ended; return how long (seconds) until the
        next one ends, or None when no window holds a count."""
        now = time.monotonic()
        due, soonest = [], None
        with self._lock:
            for kind, window in list(self._windows.items()):
                if now >= window[0]:
                    due.append(self._summary(kind, window))
                    del self._windows[kind]
                elif window[1]:
                    soonest = window[0] - now if soonest is None else min(soonest,
                                                                         window[0] - now)
        for summary in filter(None, due):
            log_refusal("%s", summary)
        return soonest

    def flush(self) -> None:
        """Log every summary now (the listener is closing)."""
        with self._lock:
            due = [self._summary(kind, window) for kind, window in self._windows.items()]
            self._windows.clear()
        for summary in filter(None, due):
            log_refusal("%s", summary)


class _Watch:
    """What the accept loop waits on: the listening socket, unless it rests, and a socket
    pair that wake() writes to from any thread. After accept() or a thread's start failed
    for want of resources, the listener rests: from _FIRST_PAUSE, doubling while it keeps
    failing, up to _MAX_PAUSE."""

    def __init__(self, listener: socket.socket):
        self.listener = listener
        listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._selector.register(listener, selectors.EVENT_READ)
        self.listening = True
        self.pause = 0.0
        self._resume_at = 0.0

    def wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # already woken (the buffer is full), or closed

    def wait(self, wait: float | None) -> bool:
        """Wait up to ``wait`` seconds (None: until something happens), never past the end
        of a rest; return whether the listener has a connection to accept (a rest that is
        over ends here)."""
        if not self.listening:
            wait = _sooner(wait, self._resume_at - time.monotonic())
        ready = {key.fileobj for key, _ in self._selector.select(
            None if wait is None else max(0.0, wait))}
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        return self.listener in ready

    def resume_if_rested(self) -> None:
        if not self.listening and time.monotonic() >= self._resume_at:
            self.listening = True
            self._selector.register(self.listener, selectors.EVENT_READ)

    def rest(self) -> None:
        """Stop watching the listener for the next pause (see the class)."""
        self.pause = min(self.pause * 2 or _FIRST_PAUSE, _MAX_PAUSE)
        self._resume_at = time.monotonic() + self.pause
        if self.listening:
            self.listening = False
            self._selector.unregister(self.listener)

    def close(self) -> None:
        self._selector.close()
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()


def _note_failure(log: RefusalLog, reason: str | None, where: str, exc: Exception) -> None:
    """Log why the connection from ``where`` failed with ``exc``: ``reason`` is why it
    was told to leave (None: it was not)."""
    if reason == "closing":
        return
    if reason is not None:
        kind = ("connections that gave way to newer ones"
                if reason.startswith("it gave way") else
                "connections dropped for no handshake in time")
        log.note(kind, f"dropped a connection from {where}: {reason}")
    elif isinstance(exc, AuthenticationError):
        log.note("connections refused for their key",
                 f"refused a connection from {where}: {describe_refusal(exc)}")
    elif isinstance(exc, (ProtocolError, TimeoutError)):
        log.note("connections dropped for breaking the protocol",
                 f"dropped a connection from {where}: {describe_refusal(exc)}")
    elif not isinstance(exc, (PeerGone, EOFError, OSError)):
        # Not the peer's doing (the consumer's factory failed to import, memory ran
        # out...): that connection ends, the others go on.
        log.note("connections dropped for an error here",
                 f"dropped a connection from {where}: {type(exc).__name__}: {exc}")


class _Guest:
    """One admitted socket: its peer, its thread, the end of its handshake deadline,
    whether the handshake is done, and why it was told to leave (None while it may stay)."""

    __slots__ = ("sock", "peer", "thread", "deadline", "admitted", "evicted")

    def __init__(self, sock: socket.socket, peer, deadline: float):
        self.sock = sock
        self.peer = peer
        self.thread: threading.Thread | None = None
        self.deadline = deadline
        self.admitted = False
        self.evicted: str | None = None

    def evict(self, reason: str) -> None:
        """Tell it to leave, for ``reason`` (under the Admission's lock): its thread's
        reads and writes fail at once, and it leaves on its own."""
        self.evicted = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Admission:
    """Lets connections in through ``listener`` (a listening TCP socket, owned from now on)
    and serves each in a daemon thread of its own: ``open(sock)`` makes a channel of it,
    ``handshake(channel)`` opens it (raising AuthenticationError, ProtocolError, EOFError
    or OSError for a peer that fails), then ``admitted(channel, hello)`` does the work. The
    channel is closed afterwards, unless ``admitted`` returns True: then it is handed over,
    appended to ``kept`` once its connection has left the table (and close() no longer
    touches it).

    The limits, kept by turn(), which the owner calls in a loop:

    - At most ``max_connections`` at once. At the cap, the oldest connection still in its
      handshake gives way to a new one; when every one has finished its handshake, the new
      one is closed at once.
    - One total deadline for the whole handshake, ``handshake_timeout`` seconds from the
      accept, however the peer spaces its bytes: then its socket is shut down.
    - When accept() fails for want of file descriptors or memory, or a thread cannot be
      started, the oldest connection still in its handshake gives way; when there is none,
      the listener rests (from 10 ms, doubling up to 0.5 s) instead of spinning. Either
      way a line is logged.
    - Every refusal is logged through ``log`` (a RefusalLog), summarised when they repeat.

    A connection that fails, in its handshake or later, never stops the others or the loop.
    """

    def __init__(self, listener: socket.socket, *, open: Callable[[socket.socket], Any],
                 handshake: Callable[[Any], Any], admitted: Callable[[Any, Any], bool],
                 max_connections: int, handshake_timeout: float, log: RefusalLog,
                 thread_name: str):
        self._watch = _Watch(listener)
        self._open = open
        self._handshake = handshake
        self._admitted = admitted
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.log = log
        self._thread_name = thread_name
        self._lock = threading.Lock()
        # In arrival order: the oldest handshake gives way first. A guest leaves the list
        # before its socket is closed, so every socket in it is open.
        self._guests: list[_Guest] = []
        # Every thread not yet known to have ended: close() waits for them all.
        self._threads: set[threading.Thread] = set()
        self._closed = False
        self.kept: list = []
        # Released by every connection's thread as it ends (a plain lock: see FlowControl).
        self._departed = threading.Lock()
        self._departed.acquire()

    @property
    def connections(self) -> int:
        """Connections admitted now, in their handshake or past it."""
        with self._lock:
            return len(self._guests)

    def wake(self) -> None:
        """From any thread: make the current turn() return now."""
        self._watch.wake()

    # The accept loop ----------------------------------------------------------------------

    def turn(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: until something happens) for a connection,
        a handshake deadline or wake(), and deal with what came."""
        now = time.monotonic()
        wait = timeout
        with self._lock:
            deadlines = [guest.deadline for guest in self._guests
                         if not guest.admitted and guest.evicted is None]
        if deadlines:
            wait = _sooner(wait, min(deadlines) - now)
        wait = _sooner(wait, self.log.tick())
        watch = self._watch
        can_accept = watch.wait(wait)
        self._expire_handshakes()
        watch.resume_if_rested()
        if watch.listening and can_accept:
            for _ in range(_ACCEPTS_PER_TURN):
                if not self._accept_one() or not watch.listening:
                    break

    def _expire_handshakes(self) -> None:
        now = time.monotonic()
        with self._lock:
            for guest in self._guests:
                if not guest.admitted and guest.evicted is None and now >= guest.deadline:
                    guest.evict(f"no handshake within {self.handshake_timeout:g} s")

    def _accept_one(self) -> bool:
        """Take one connection from the backlog; False when there was none to take (or
        the listener must rest)."""
        try:
            sock, peer = self._watch.listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno not in _OUT_OF_RESOURCES:
                return True  # that connection is gone (ECONNABORTED...); try the next
            if self._make_room("it gave way to a newer connection: no file descriptor "
                               "was left for that one"):
                self.log.note("failed accept() calls", f"accept() failed: {exc.strerror}; "
                                                       "the oldest connection still in its "
                                                       "handshake gave way")
                self._await_departure()
                return True
            self._watch.rest()
            self.log.note("failed accept() calls", f"accept() failed: {exc.strerror}; "
                                                   f"accepting again in "
                                                   f"{self._watch.pause:g} s")
            return False
        where = format_address(*peer[:2])
        with self._lock:
            full = sum(guest.evicted is None for guest in self._guests) >= self.max_connections
        if full and not self._make_room(f"it gave way to a newer connection at the cap of "
                                        f"{self.max_connections} connections"):
            sock.close()
            self.log.note("connections refused at the cap",
                          f"refused a connection from {where}: all {self.max_connections} "
                          "connections are in use (max_connections)")
            return True
        self._start(sock, peer)
        return True

    def _start(self, sock: socket.socket, peer) -> None:
        """Serve ``sock`` in a thread of its own; when no thread can be started, make room
        and try again for a moment, then close it (and rest)."""
        guest = _Guest(sock, peer, time.monotonic() + self.handshake_timeout)
        made_room = False
        give_up = 0.0
        while True:
            thread = threading.Thread(target=self._serve, args=(guest,), daemon=True,
                                      name=self._thread_name)
            guest.thread = thread
            with self._lock:
                self._guests.append(guest)
            try:
                thread.start()
            except (RuntimeError, MemoryError) as exc:
                with self._lock:
                    self._guests.remove(guest)
                failure = exc
            else:
                with self._lock:
                    self._threads.add(thread)
                self._watch.pause = 0.0  # resources are back: a next failure rests briefly
                return
            finally:
                # Ended threads let go of their Thread objects here: on 3.13 a thread's
                # stack is freed only once its Thread is joined or dropped.
                with self._lock:
                    self._threads = {t for t in self._threads if t.is_alive()}
            if not made_room:
                made_room = self._make_room("it gave way to a newer connection: no thread "
                                            "could be started for that one")
                if made_room:
                    self.log.note("threads that could not be started",
                                  f"cannot start a thread for a connection from "
                                  f"{format_address(*peer[:2])}: {failure}; the oldest "
                                  "connection still in its handshake gave way")
                    self._await_departure()
                    give_up = time.monotonic() + _DEPARTURE_WAIT
                    continue
            elif time.monotonic() < give_up:
                time.sleep(0.001)  # its thread has said goodbye but not yet exited
                continue
            break
        sock.close()
        self._watch.rest()
        self.log.note("threads that could not be started",
                      f"cannot start a thread for a connection from "
                      f"{format_address(*peer[:2])}: {failure}; closed it, accepting again "
                      f"in {self._watch.pause:g} s")

    def _await_departure(self) -> None:
        """Wait (up to _DEPARTURE_WAIT) for a connection's thread to end: the one that was
        told to give way, usually."""
        self._departed.acquire(timeout=_DEPARTURE_WAIT)
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}

    def _make_room(self, reason: str) -> bool:
        """Tell the oldest connection still in its handshake to leave; False if none is."""
        with self._lock:
            for guest in self._guests:
                if not guest.admitted and guest.evicted is None:
                    guest.evict(reason)
                    return True
        return False

    # Each connection's thread -------------------------------------------------------------

    def _serve(self, guest: _Guest) -> None:
        where = format_address(*guest.peer[:2])
        channel = None
        kept = False
        try:
            channel = self._open(guest.sock)
            hello = self._handshake(channel)
            with self._lock:
                guest.admitted = guest.evicted is None
            if not guest.admitted:
                raise ConnectionAbortedError(guest.evicted)
            guest.sock.settimeout(None)
            kept = self._admitted(channel, hello)
        except Exception as exc:
            _note_failure(self.log, guest.evicted, where, exc)
        finally:
            with self._lock:
                self._guests.remove(guest)
            if kept:
                self.kept.append(channel)
            elif channel is not None:
                channel.close()
            else:
                guest.sock.close()
            try:
                self._departed.release()
            except RuntimeError:
                pass  # a departure is already pending
            self.wake()

    # Closing ------------------------------------------------------------------------------

    def close(self, grace: float | None) -> list[threading.Thread]:
        """Stop accepting, drop every connection (its socket is shut down, so its thread's
        reads and writes fail at once) and wait up to ``grace`` seconds (None: for ever)
        for their threads; return those still running then (their consumers have not
        returned from a call). Call it once the loop calling turn() has stopped;
        idempotent."""
        with self._lock:
            for guest in self._guests:
                if guest.evicted is None:
                    guest.evict("closing")
                else:
                    guest.evicted = "closing"
            threads = [thread for thread in self._threads if thread.is_alive()]
        if not self._closed:
            self._closed = True
            self._watch.close()
        give_up = None if grace is None else time.monotonic() + grace
        for thread in threads:
            thread.join(None if give_up is None else max(0.0, give_up - time.monotonic()))
        self.log.flush()
        return [thread for thread in threads if thread.is_alive()]


def _sooner(wait: float | None, other: float | None) -> float | None:
    """The shorter of two waits in seconds, None meaning for ever."""
    if wait is None:
        return other
    return wait if other is None else min(wait, other)
