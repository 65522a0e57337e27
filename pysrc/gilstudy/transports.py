"""The three ways a spawned coprocess and its parent reach each other, each with both of its
ends in one class: anonymous pipes, two FIFOs, and a TCP socket the child connects back to
with a key. The parent calls prepare() (what the child needs), then connect() once the
child runs; the child calls open_child_end(). Also the socket helpers that serve() and
connect() share. The child imports this module too, so what only the parent or only the
socket needs (fcntl, tempfile, socket, gilstudy.admission) is imported where it is used.
"""

import errno
import itertools
import os
import select
import time
from typing import Callable

from gilstudy import wire
from gilstudy.errors import WorkerDied

__all__ = ["TRANSPORTS", "START_TIMEOUT", "CONNECT_TIMEOUT", "PipeTransport", "FifoTransport",
           "SocketTransport", "open_socket", "family"]

# How long spawn() waits for a coprocess to open its FIFOs or connect back, and connect()
# for a server's HELLO, in seconds; only a machine in deep trouble takes longer.
START_TIMEOUT = 60.0

# How long connect() waits, by default, for the server to accept the connection and finish
# the handshake, and how long a server (or spawn()'s parent) gives a new connection to
# finish all of it before dropping it, in seconds.
CONNECT_TIMEOUT = 10.0

# Connections spawn()'s parent handshakes with at once while it waits for its child: a
# stranger more gives way, so strangers cannot crowd the child out for long.
_SPAWN_HANDSHAKES = 8

# How long spawn()'s parent waits for the handshake threads of strangers it dropped.
_DROPPED_GRACE = 1.0


def _wait_until(ready: Callable[[float], bool], process, what: str,
                deadline: float | None = None) -> None:
    """Call ``ready(timeout)``, which waits up to ``timeout`` seconds for the child, until it
    returns true; raise WorkerDied if ``process`` ends first or is not ready by
    ``deadline`` (START_TIMEOUT from now by default; the caller then kills it). ``what``
    completes "before ..."."""
    if deadline is None:
        deadline = time.monotonic() + START_TIMEOUT
    while not ready(0.05):
        if process.poll() is not None:
            raise WorkerDied(process.pid, process.returncode, f"it ended before {what}",
                             where=f"coprocess {process.pid}")
        if time.monotonic() > deadline:
            raise WorkerDied(process.pid, None,
                             f"{START_TIMEOUT:g} s passed before {what}; it was killed",
                             where=f"coprocess {process.pid}")


def _spawned_channel(channel: wire.Channel) -> wire.Channel:
    # The child's frame limit is ours (spawn passed it): frames may go before its HELLO.
    channel.peer_max_frame = channel.max_frame
    return channel


def _grow_pipe(fd: int) -> None:
    # A 1 MiB pipe (the unprivileged Linux maximum) lets the producer run further ahead of
    # the consumer before a write blocks, and moves large arrays in fewer, longer copies;
    # where that is refused, the default 64 KiB works.
    import fcntl

    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass


def _child_channel(read_fd: int, write_fd: int, max_frame: int) -> wire.Channel:
    # Processes the consumer starts must not hold our ends open: the parent would never
    # see EOF when this process dies.
    os.set_inheritable(read_fd, False)
    os.set_inheritable(write_fd, False)
    # The parent sends before it reads our HELLO: it uses the limit it gave us.
    return _spawned_channel(wire.Channel.from_fds(read_fd, write_fd, max_frame=max_frame))


class PipeTransport:
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

    def connect(self, process, options: dict, flags: int) -> wire.Channel:
        self._close_child_fds()
        replies_r, items_w = self._parent_fds
        self._parent_fds = []
        return _spawned_channel(wire.Channel.from_fds(replies_r, items_w, **options))

    @staticmethod
    def open_child_end(where: list[str], max_frame: int) -> wire.Channel:
        read_fd, write_fd = map(int, where)
        return _child_channel(read_fd, write_fd, max_frame)

    def _close_child_fds(self) -> None:
        while self._child_fds:
            os.close(self._child_fds.pop())

    def cleanup(self) -> None:
        self._close_child_fds()
        while self._parent_fds:
            os.close(self._parent_fds.pop())


_fifo_numbers = itertools.count()


class FifoTransport:
    """Two named pipes, ``coprocess-PID-N.items`` and ``.replies``, in ``path`` (a fresh
    temporary directory by default), readable and writable by this user only. Both are
    removed as soon as the two ends have opened them, so nothing is left behind even if a
    process is killed later."""

    name = "FIFO"
    handshakes = False

    def __init__(self, path=None):
        if path is None:
            import tempfile

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

    def connect(self, process, options: dict, flags: int) -> wire.Channel:
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

    @staticmethod
    def open_child_end(where: list[str], max_frame: int) -> wire.Channel:
        # The parent opens its write end of ``items`` once this open has begun, and has
        # its read end of ``replies`` open already, so neither open blocks for long.
        read_fd = os.open(where[0], os.O_RDONLY)
        write_fd = os.open(where[1], os.O_WRONLY)
        return _child_channel(read_fd, write_fd, max_frame)

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


class SocketTransport:
    """TCP: this process listens on ``address`` (loopback, ephemeral port by default) and
    the child connects back; the listening socket closes once it has. The two prove to
    each other that they hold a fresh random key, which the child reads from a pipe it
    inherits (not from its command line or environment, which others may read). Each
    connection is admitted through gilstudy.admission: its handshake runs in a thread of
    its own under one total deadline (CONNECT_TIMEOUT), so a stranger who connects first,
    however slowly it sends, neither delays nor blocks the child's; strangers are logged
    and dropped, and the wait for the child goes on."""

    name = "socket"
    handshakes = True

    def __init__(self, address=None):
        self._address = address if address is not None else ("127.0.0.1", 0)
        self._listener = None
        self._key_fd: int | None = None
        self._authkey = os.urandom(32)

    def prepare(self) -> tuple[list[str], tuple[int, ...]]:
        import socket

        from gilstudy.admission import format_address

        self._listener = socket.create_server(self._address, family=family(self._address[0]))
        host, port = self._listener.getsockname()[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.name = f"socket {format_address(host, port)}"
        key_r, key_w = os.pipe()
        self._key_fd = key_r
        with open(key_w, "wb") as pipe:
            pipe.write(self._authkey)  # far below a pipe's capacity: never blocks
        return [str(key_r), host, str(port)], (key_r,)

    def connect(self, process, options: dict, flags: int) -> wire.Channel:
        from gilstudy.admission import Admission, RefusalLog

        self._close_key()
        deadline = time.monotonic() + START_TIMEOUT

        def handshake(channel: wire.Channel):
            return wire.handshake(channel, pid=os.getpid(), flags=flags,
                                  authkey=self._authkey, accepting=True)

        # Each connection's handshake runs in a thread of its own, under one total deadline,
        # so a stranger who connects first (and dawdles) neither delays nor blocks ours.
        admission = Admission(
            self._listener, open=lambda sock: open_socket(sock, options, CONNECT_TIMEOUT),
            handshake=handshake, admitted=lambda channel, hello: True,
            max_connections=_SPAWN_HANDSHAKES, handshake_timeout=CONNECT_TIMEOUT,
            log=RefusalLog(f"gilstudy spawn on {self.name}"),
            thread_name="gilstudy-spawn-handshake")
        self._listener = None  # the admission owns it now

        def child_admitted(timeout: float) -> bool:
            if not admission.kept:
                admission.turn(timeout)
            return bool(admission.kept)

        try:
            _wait_until(child_admitted, process, "it connected back", deadline)
        except BaseException:
            admission.close(_DROPPED_GRACE)
            for channel in admission.kept:
                channel.close()
            raise
        admission.close(_DROPPED_GRACE)
        channel, *others = admission.kept
        for other in others:
            other.close()  # a second peer with the key: only the child has it
        return channel

    @staticmethod
    def open_child_end(where: list[str], max_frame: int) -> wire.Channel:
        import socket

        sock = socket.create_connection((where[0], int(where[1])))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.set_inheritable(False)
        return wire.Channel.from_socket(sock, max_frame=max_frame)

    def _close_key(self) -> None:
        if self._key_fd is not None:
            os.close(self._key_fd)
            self._key_fd = None

    def cleanup(self) -> None:
        self._close_key()
        if self._listener is not None:
            self._listener.close()
            self._listener = None


TRANSPORTS = {"pipe": PipeTransport, "fifo": FifoTransport, "socket": SocketTransport}


# -- Socket helpers shared with serve() and connect() ---------------------------------------

def open_socket(sock, options: dict, timeout: float | None) -> wire.Channel:
    """A channel over the connected ``sock``, whose reads and writes time out after
    ``timeout`` seconds until the handshake is done (the caller then clears it)."""
    import socket

    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return wire.Channel.from_socket(sock, **options)


def family(host: str) -> int:
    """The socket address family of ``host``: AF_INET6 for an address with a colon, else AF_INET."""
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
