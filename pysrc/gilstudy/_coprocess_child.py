# The consumer end of the framed protocol: run a consumer on the items read from a channel
# and send back acknowledgements, results and errors. A spawned coprocess runs this module
# as its __main__ (``python -m gilstudy._coprocess_child TRANSPORT ...``) and serve() runs
# run_consumer() in a thread per connection. It imports only what that needs (no threads,
# no subprocess), so a coprocess starts fast.

import os
import signal
import sys
import time

from gilstudy import wire
from gilstudy.errors import AuthenticationError, ProtocolError

__all__ = ["PeerGone", "run_consumer", "main"]


# Items between two looks at the clock, at most; see run_consumer().
_MAX_STRIDE = 64


class PeerGone(Exception):
    """Writing to the sender failed: it closed the channel or died. Nobody is left to tell,
    so the consumer end just stops."""


def _write(channel: wire.Channel, frames) -> None:
    try:
        channel.write_frames(frames)
    except OSError as exc:
        raise PeerGone(str(exc)) from exc


def _reply(channel: wire.Channel, results: list, handled: int, *last) -> None:
    """Send the results gathered so far and the count handled, then the frames in ``last``.
    A result that cannot be pickled, or alone makes a frame longer than the sender
    accepts, raises here, as the consumer's error; results too many for one frame go in
    several."""
    frames = []
    if results:
        for payload, buffers in wire.dumps_in_frames(results, channel.peer_max_frame):
            frames.append((wire.RESULTS, payload, buffers))
        results.clear()
    frames.append((wire.ACK, wire.ACK_BODY.pack(handled)))
    frames.extend(last)
    _write(channel, frames)


def _report(channel: wire.Channel, results: list, handled: int, acknowledged: int,
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


def _drain(channel: wire.Channel) -> None:
    """After an error: discard what the sender still writes until it closes the channel
    (or says CLOSE), so its writes never fail while it has not yet read the error."""
    while True:
        try:
            kind, _ = channel.read_frame()
        except (EOFError, OSError, ProtocolError):
            return
        if kind == wire.CLOSE:
            return


def run_consumer(channel: wire.Channel, make_consumer, want_results: bool) -> bool:
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


def _build_from_setup(channel: wire.Channel):
    """Read the SETUP frame of a spawned coprocess: take the parent's sys.path, so that
    whatever the parent imports by name the child can import too, then unpickle the
    factory and its arguments (which may need that path) and call it."""
    kind, payload = channel.read_frame()
    if kind != wire.SETUP:
        raise ProtocolError(f"expected a SETUP frame, got {wire.KIND_NAMES[kind]}")
    sys_path, call = channel.load(payload)
    sys.path[:] = sys_path
    factory, args = channel.load(call)
    return factory(*args)


def _open_channel(transport: str, where: list[str], max_frame: int) -> wire.Channel:
    if transport == "pipe":
        read_fd, write_fd = map(int, where)
    elif transport == "fifo":
        # The parent opens its write end of ``items`` once this open has begun, and has
        # its read end of ``replies`` open already, so neither open blocks for long.
        read_fd = os.open(where[0], os.O_RDONLY)
        write_fd = os.open(where[1], os.O_WRONLY)
    elif transport == "socket":
        import socket

        sock = socket.create_connection((where[0], int(where[1])))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.set_inheritable(False)
        return wire.Channel.from_socket(sock, max_frame=max_frame)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    # Processes the consumer starts must not hold our ends open: the parent would never
    # see EOF when this process dies.
    os.set_inheritable(read_fd, False)
    os.set_inheritable(write_fd, False)
    channel = wire.Channel.from_fds(read_fd, write_fd, max_frame=max_frame)
    # The parent sends before it reads our HELLO: it uses the limit it gave us.
    channel.peer_max_frame = max_frame
    return channel


def _read_key(fd: int) -> bytes:
    """The key the parent wrote into the pipe ``fd`` (then closed): all of it, up to EOF."""
    chunks = []
    with open(fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def main(argv: list[str]) -> int:
    """Entry point of a spawned coprocess, with the arguments spawn() passes:
    ``TRANSPORT MAX_FRAME KEY_FD WHERE...``; KEY_FD is a pipe holding the key a socket
    channel authenticates with, or "-" for none."""
    # Ctrl-C reaches the whole foreground process group; the parent decides what happens
    # to its coprocesses, and this one ends when its input closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    transport, max_frame, key_fd, *where = argv
    authkey = None if key_fd == "-" else _read_key(int(key_fd))
    channel = _open_channel(transport, where, int(max_frame))
    try:
        hello = wire.handshake(channel, pid=os.getpid(), authkey=authkey, accepting=False)
        run_consumer(channel, lambda: _build_from_setup(channel),
                     want_results=bool(hello.flags & wire.WANT_RESULTS))
    except AuthenticationError as exc:
        print(f"gilstudy coprocess {os.getpid()}: {exc}", file=sys.stderr)
        return 2
    except (PeerGone, EOFError, OSError):
        return 0  # the parent is gone: nobody to report to
    except ProtocolError as exc:
        print(f"gilstudy coprocess {os.getpid()}: {exc}", file=sys.stderr)
        return 2
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
