# The framed wire protocol spoken between two gilstudy ends (spawn's parent and child,
# connect and serve): length-prefixed frames, the handshake that opens a channel, and how a
# remote exception travels. Every byte read from a peer goes through here, so the checks a
# peer must pass (authentication, frame size limits, restricted unpickling) have one home.

import collections
import os
import pickle
import struct

from gilstudy.errors import ProtocolError

__all__ = [
    "HEADER", "VERSION", "MAGIC", "PICKLE_PROTOCOL", "KIND_NAMES",
    "HELLO", "SETUP", "ITEMS", "CLOSE", "ACK", "RESULTS", "ERROR", "DONE",
    "WANT_RESULTS", "ACK_BODY", "FLUSH_INTERVAL",
    "Channel", "Hello", "send_hello", "read_hello", "encode_error", "decode_error",
]

# Every frame is a 9-byte header, then ``length`` bytes of payload:
#   kind: 1 byte (an ASCII letter, so a hex dump reads), length: unsigned 64-bit, big-endian.
HEADER = struct.Struct("!BQ")

# Kinds sent by the end that owns the items (the sender)...
HELLO = ord("H")    # both ends, first frame: magic, version, flags, pid (HELLO_BODY)
SETUP = ord("S")    # spawn only: pickled (sys_path, pickled (factory, args)), see below
ITEMS = ord("I")    # a pickled list of items, in order
CLOSE = ord("C")    # empty: close the consumer, report its result, then DONE
# ...and by the end that runs the consumer.
ACK = ord("A")      # ACK_BODY: how many items the consumer has handled so far, in total
RESULTS = ord("R")  # a pickled list of results (non-None values of send() or close())
ERROR = ord("E")    # encode_error(): the consumer raised; it handles nothing more
DONE = ord("D")     # empty: the consumer closed cleanly; nothing follows

KIND_NAMES = {HELLO: "HELLO", SETUP: "SETUP", ITEMS: "ITEMS", CLOSE: "CLOSE", ACK: "ACK",
              RESULTS: "RESULTS", ERROR: "ERROR", DONE: "DONE"}

MAGIC = b"GSTD"
VERSION = 1
HELLO_BODY = struct.Struct("!4sBBI")  # magic, version, flags, pid
WANT_RESULTS = 0x01                    # HELLO flag: the sender forwards results, so send them
ACK_BODY = struct.Struct("!Q")

# The longest an item, a result or an acknowledgement waits in a batch before its frame is
# written, in seconds (plus, for a busy producer thread, one GIL switch interval).
FLUSH_INTERVAL = 0.005

# Stream buffers: large enough that a batch of small items is one system call.
_BUFFER = 1 << 16

# Protocol 5 (Python 3.8+) on both ends: they run the same gilstudy, hence a recent Python.
PICKLE_PROTOCOL = 5


# What a peer said about itself when the channel opened. (A collections namedtuple, not a
# typing.NamedTuple: a coprocess should not pay for importing typing.)
Hello = collections.namedtuple("Hello", ["pid", "flags"])


class Channel:
    """Frames over a pair of binary streams: ``reader`` (buffered, with ``read(n)``) and
    ``writer`` (with ``write`` and ``flush``). from_fds() builds one over pipes or FIFOs,
    from_socket() over a connected socket.

    Reading and writing may happen in two different threads, but each direction belongs to
    one thread at a time: the channel itself holds no lock.
    """

    def __init__(self, reader, writer, sock=None):
        self._reader = reader
        self._writer = writer
        self._read = reader.read
        self._sock = sock
        # Every pickle that comes from the peer is loaded with this: the place for a
        # restricted unpickler on channels that cross a trust boundary.
        self.loads = pickle.loads

    @classmethod
    def from_fds(cls, read_fd: int, write_fd: int) -> "Channel":
        """A channel over two file descriptors (pipe or FIFO ends), which it then owns."""
        return cls(open(read_fd, "rb", buffering=_BUFFER), open(write_fd, "wb", buffering=_BUFFER))

    @classmethod
    def from_socket(cls, sock) -> "Channel":
        """A channel over a connected stream socket, which it then owns."""
        return cls(sock.makefile("rb", buffering=_BUFFER), sock.makefile("wb", buffering=_BUFFER),
                   sock)

    def read_frame(self, max_length: int | None = None) -> tuple[int, bytes]:
        """Read one frame; return ``(kind, payload)``.

        Raises EOFError when the stream ends cleanly between frames, ProtocolError when it
        ends inside one, carries an unknown kind or announces a payload longer than
        ``max_length`` (checked before reading it), and OSError from the stream itself
        (e.g. ConnectionResetError).
        """
        header = self._read(HEADER.size)
        if len(header) < HEADER.size:
            if not header:
                raise EOFError("the channel closed")
            raise ProtocolError(f"the channel closed inside a frame header ({len(header)} of "
                                f"{HEADER.size} bytes)")
        kind, length = HEADER.unpack(header)
        if kind not in KIND_NAMES:
            raise ProtocolError(f"unknown frame kind {kind:#04x}; is the peer a gilstudy "
                                f"coprocess of wire version {VERSION}?")
        if max_length is not None and length > max_length:
            raise ProtocolError(f"a {KIND_NAMES[kind]} frame of {length} bytes, more than the "
                                f"{max_length} allowed here")
        if not length:
            return kind, b""
        payload = self._read(length)
        if len(payload) < length:
            raise ProtocolError(f"the channel closed inside a {KIND_NAMES[kind]} frame "
                                f"({len(payload)} of {length} bytes)")
        return kind, payload

    def write_frame(self, kind: int, payload: bytes = b"") -> None:
        """Write one frame and flush it. OSError (BrokenPipeError...) means the peer is gone."""
        # Two writes, no concatenation: a small frame still leaves in one system call (the
        # buffer holds both), a large payload is written straight from its own bytes.
        write = self._writer.write
        write(HEADER.pack(kind, len(payload)))
        if payload:
            write(payload)
        self._writer.flush()

    def write_frames(self, frames) -> None:
        """Write several ``(kind, payload)`` frames with one flush (one system call when small)."""
        write = self._writer.write
        for kind, payload in frames:
            write(HEADER.pack(kind, len(payload)))
            if payload:
                write(payload)
        self._writer.flush()

    def close_writer(self) -> None:
        """Close the writing side: the peer reads EOF after the frames already written.
        A peer that is already gone is no error here; idempotent."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError:
            # Unflushed bytes for a dead peer: BufferedWriter.close() still closes the raw
            # stream after the failed flush, so nothing leaks.
            pass
        if self._sock is not None:
            import socket

            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def shutdown(self) -> None:
        """From any thread: make a read blocked in another thread return (EOF) and writes
        fail, for a socket channel. Over pipes it does nothing: ending the peer does that."""
        if self._sock is not None:
            import socket

            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Close both sides (and the socket); idempotent. Call it from the thread that
        reads, once no other thread uses the channel."""
        self.close_writer()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def send_hello(channel: Channel, pid: int, flags: int = 0) -> None:
    """Open a channel: tell the peer who we are. Both ends send a HELLO, then read the
    peer's with read_hello(); authentication will add its exchange between the two."""
    channel.write_frame(HELLO, HELLO_BODY.pack(MAGIC, VERSION, flags, pid))


def read_hello(channel: Channel) -> Hello:
    """Read the peer's HELLO. Raises ProtocolError if the peer is not a gilstudy end of
    this wire version, EOFError if it closed the channel first."""
    kind, payload = channel.read_frame(max_length=HELLO_BODY.size)
    if kind != HELLO or len(payload) != HELLO_BODY.size:
        raise ProtocolError(f"expected a HELLO frame of {HELLO_BODY.size} bytes, got "
                            f"{KIND_NAMES[kind]} of {len(payload)} bytes")
    magic, version, flags, pid = HELLO_BODY.unpack(payload)
    if magic != MAGIC:
        raise ProtocolError(f"the peer is not a gilstudy coprocess (magic {magic!r})")
    if version != VERSION:
        raise ProtocolError(f"the peer speaks gilstudy wire version {version}, this end "
                            f"speaks {VERSION}; run the same gilstudy on both ends")
    return Hello(pid, flags)


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_error(exc: BaseException) -> bytes:
    """The payload of an ERROR frame: the exception's type name, message and formatted
    traceback, pickled as three strings so the other end needs none of our classes."""
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    text += f"(in process {os.getpid()})\n"
    return pickle.dumps((_type_name(type(exc)), str(exc), text), PICKLE_PROTOCOL)


def decode_error(channel: Channel, payload: bytes) -> tuple[str, str, str]:
    """``(remote_type, message, remote_traceback)`` from the payload of an ERROR frame
    read from ``channel``."""
    try:
        remote_type, message, text = channel.loads(payload)
    except Exception as exc:
        raise ProtocolError(f"unreadable ERROR frame: {exc}") from exc
    return str(remote_type), str(message), str(text)
