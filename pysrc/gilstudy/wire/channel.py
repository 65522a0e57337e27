"""Channels: gilstudy frames over a byte stream in each direction (pipes, FIFOs or a
socket), and FrameChannel, the part every channel shares (the MPI channel too): loading a
frame's payload and writing one frame."""

import errno
import io
import os
import pickle
import select
import struct

from gilstudy import _checks
from gilstudy.errors import ProtocolError
from gilstudy.wire.frames import (HEADER, KIND_NAMES, MAX_BUFFERS, MAX_FRAME, OOB_COUNT,
                                  OOB_KINDS,
                                  OOB_SIZE, PLAIN_KINDS, VERSION, OutOfBand, frame_size,
                                  receive_buffer)
from gilstudy.wire.pickling import dumps_in_frames
from gilstudy.wire.restricted import (RestrictedUnpickler, budget_for, permits,
                                      restricted_loads)

__all__ = ["FrameChannel", "Channel"]

# Read buffer: large enough that a batch of small items is one system call.
_BUFFER = 1 << 16

# os.writev and sendmsg take at most IOV_MAX (1024 on Linux) pieces at a time.
_MAX_PIECES = 512

# A writer waiting for a peer to read looks this often (milliseconds) whether its writes
# were cancelled (Channel.cancel_writes) or its patience ran out.
_CANCEL_CHECK_MS = 50


class FrameChannel:
    """What every gilstudy channel shares, whatever carries its frames: the limits, the
    unpickling of a frame's payload and the writing of one frame. A subclass (Channel over
    a byte stream, gilstudy.mpi.channel.MpiChannel over MPI) adds ``read_frame(max_length)``,
    ``write_frames(frames, patience)``, ``cancel_writes()``, ``close_writer()``,
    ``shutdown()`` and ``close()``.

    ``max_frame`` is the longest frame read here; ``peer_max_frame`` the longest the peer
    reads (read_hello() sets it); ``loads`` is restricted_loads(allowed), and ``allowed``
    the checked form of ``allowed`` (None: any pickle loads). ``shared`` is a
    gilstudy.shared.SharedMemory when the peer is a process on this host that takes arrays
    through shared memory (spawn() sets it), else None.
    """

    shared = None

    def __init__(self, *, max_frame: int = MAX_FRAME, allowed=None):
        self.max_frame = max_frame
        self.peer_max_frame = max_frame
        self.loads = restricted_loads(allowed)
        self.allowed = None if allowed is None else permits(allowed)

    def load(self, payload):
        """Unpickle the payload of an ITEMS, RESULTS, SETUP or ERROR frame with ``loads``
        (with the channel's shared memory, if any, for arrays sent as handles). Anything
        that keeps it from loading (a refused global, a malformed pickle, an object whose
        reconstruction raises) raises ProtocolError, the cause chained."""
        if type(payload) is OutOfBand:
            data, buffers = payload.pickle, payload.buffers
        else:
            data, buffers = payload, None
        shared = self.shared
        try:
            if shared is None:
                if buffers is None:
                    return self.loads(data)
                return self.loads(data, buffers=buffers)
            if self.allowed is None:
                unpickler = pickle.Unpickler(io.BytesIO(data), buffers=buffers)
            else:
                unpickler = RestrictedUnpickler(io.BytesIO(data), allowed=self.allowed,
                                                buffers=buffers, budget=budget_for(len(data)))
            unpickler.persistent_load = shared.attach
            try:
                return unpickler.load()
            finally:
                shared.loaded()
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"unreadable pickle from the peer: {type(exc).__name__}: "
                                f"{exc}") from exc

    def dump_frames(self, items: list) -> list:
        """dumps_in_frames() for this channel: within peer_max_frame, large arrays through
        its shared memory when it has some."""
        return dumps_in_frames(items, self.peer_max_frame, self.shared)

    def write_frame(self, kind: int, payload: bytes = b"", buffers=(), patience=None) -> None:
        """Write one frame, with ``buffers`` (memoryviews from dumps()) out of band after the
        pickle ``payload``. Raises ProtocolError, before writing anything, if the frame is
        longer than peer_max_frame; TimeoutError when the peer reads nothing for as long as
        ``patience`` allows; OSError (BrokenPipeError...) if the peer is gone. After a
        TimeoutError the frame may be partly written: the channel is unusable.

        ``patience`` is None (wait as long as the peer takes) or an object with two methods:
        ``stalled()``, asked at least every 50 ms while the peer reads nothing, true to give
        up; and ``moved()``, called each time the peer has read part of what waits, so that
        a slow reader is never taken for a stalled one (gilstudy.remote gives each call
        one, which acknowledgements from the peer also move)."""
        self.write_frames([(kind, payload, buffers)], patience)


    def write_frames(self, frames, patience=None) -> None:
        raise NotImplementedError


class Channel(FrameChannel):
    """Frames over a byte stream in each direction: ``reader`` (buffered, with ``read(n)``
    and ``readinto``) and a writing file descriptor or socket; from_fds() builds one over
    pipes or FIFOs, from_socket() over a connected socket.

    ``max_frame`` is the longest frame read here (longer ones raise ProtocolError before
    anything is read or allocated for them); ``peer_max_frame`` the longest the peer reads,
    which read_hello() learns from its HELLO: write_frame() refuses longer frames. Every
    pickle from the peer is loaded with ``loads``: restricted_loads(allowed).

    Writes are unbuffered (one writev or sendmsg per call when the peer keeps up) and never
    block without limit: a write waiting for the peer to read raises TimeoutError once its
    ``patience`` runs out, or BrokenPipeError after cancel_writes(). Reading and writing may happen in
    two different threads, but each direction belongs to one thread at a time: the channel
    itself holds no lock.
    """

    def __init__(self, reader, write_fd: int, sock=None, *, max_frame: int = MAX_FRAME,
                 allowed=None):
        _checks.max_frame("Channel", max_frame)
        self._reader = reader
        self._read = reader.read
        self._readinto = reader.readinto
        self._write_fd = write_fd
        self._sock = sock
        super().__init__(max_frame=max_frame, allowed=allowed)
        self._cancelled = False
        self._poller = select.poll()
        self._poller.register(write_fd, select.POLLOUT)
        if sock is not None:
            import socket

            sendmsg = sock.sendmsg
            flags = socket.MSG_DONTWAIT
            self._writev = lambda pieces: sendmsg(pieces, (), flags)
        else:
            os.set_blocking(write_fd, False)
            self._writev = lambda pieces: os.writev(write_fd, pieces)

    @classmethod
    def from_fds(cls, read_fd: int, write_fd: int, **options) -> "Channel":
        """A channel over two file descriptors (pipe or FIFO ends), which it then owns;
        ``options`` are max_frame and allowed."""
        return cls(open(read_fd, "rb", buffering=_BUFFER), write_fd, **options)

    @classmethod
    def from_socket(cls, sock, **options) -> "Channel":
        """A channel over a connected stream socket, which it then owns."""
        return cls(sock.makefile("rb", buffering=_BUFFER), sock.fileno(), sock, **options)

    # Reading ----------------------------------------------------------------------------

    def read_frame(self, max_length: int | None = None) -> tuple[int, bytes]:
        """Read one frame; return ``(kind, payload)``. A frame with out-of-band buffers
        reads as ITEMS or RESULTS with an OutOfBand payload (see load()).

        Raises EOFError when the stream ends cleanly between frames, ProtocolError when it
        ends inside one, carries an unknown kind, a malformed buffer table or a length over
        ``max_length`` or max_frame (checked before reading it), and OSError from the
        stream itself (e.g. ConnectionResetError).
        """
        header = self._read(HEADER.size)
        if len(header) < HEADER.size:
            if not header:
                raise EOFError("the channel closed")
            raise ProtocolError(f"the channel closed inside a frame header ({len(header)} of "
                                f"{HEADER.size} bytes)")
        kind, length = HEADER.unpack(header)
        if kind not in KIND_NAMES:
            raise _not_gilstudy(header) or ProtocolError(
                f"unknown frame kind {kind:#04x}; is the peer a gilstudy coprocess of wire "
                f"version {VERSION}?")
        limit = self.max_frame if max_length is None else min(max_length, self.max_frame)
        if length > limit:
            raise _not_gilstudy(header) or ProtocolError(
                f"a {KIND_NAMES[kind]} frame of {length} bytes, more than the {limit} allowed "
                "here")
        if kind in PLAIN_KINDS:
            return PLAIN_KINDS[kind], self._read_out_of_band(kind, length)
        if not length:
            return kind, b""
        return kind, self._read_exactly(kind, length)

    def _read_exactly(self, kind: int, length: int) -> bytes:
        payload = self._read(length)
        if len(payload) < length:
            raise ProtocolError(f"the channel closed inside a {KIND_NAMES[kind]} frame "
                                f"({len(payload)} of {length} bytes)")
        return payload

    def _read_out_of_band(self, kind: int, length: int) -> OutOfBand:
        sizes, left = _buffer_table(lambda size: self._read_exactly(kind, size),
                                    KIND_NAMES[kind], length)
        data = self._read_exactly(kind, left)
        buffers = []
        for size in sizes:
            buffer = receive_buffer(size)
            if self._readinto(buffer) != size:
                raise ProtocolError(f"the channel closed inside an out-of-band buffer of a "
                                    f"{KIND_NAMES[kind]} frame")
            buffers.append(buffer)
        return OutOfBand(data, buffers)

    # Writing ----------------------------------------------------------------------------

    def write_frames(self, frames, patience=None) -> None:
        """Write several ``(kind, payload)`` or ``(kind, payload, buffers)`` frames with one
        system call when the peer keeps up; see write_frame()."""
        self._write_all(_frame_pieces(frames, self.peer_max_frame), patience)

    def _write_all(self, pieces: list, patience) -> None:
        if self._write_fd is None:
            raise BrokenPipeError(errno.EPIPE, "the channel's writing side is closed")
        writev = self._writev
        left = sum(len(piece) if type(piece) is bytes else piece.nbytes for piece in pieces)
        while True:
            try:
                written = writev(pieces[:_MAX_PIECES])
            except BlockingIOError:
                written = 0
            left -= written
            if not left:
                return
            if written:
                pieces = _skip(pieces, written)
                if patience is not None:
                    patience.moved()
            self._wait_writable(patience)

    def _wait_writable(self, patience) -> None:
        while True:
            if self._cancelled:
                raise BrokenPipeError(errno.EPIPE, "writes to this channel were cancelled")
            if patience is not None and patience.stalled():
                raise TimeoutError("the peer stopped reading")
            if self._poller.poll(_CANCEL_CHECK_MS):
                return

    def cancel_writes(self) -> None:
        """From any thread: a write waiting for the peer to read raises BrokenPipeError
        within 50 ms, and so does every later one. For abandoning a stalled peer."""
        self._cancelled = True
        if self.shared is not None:
            self.shared.cancel()

    # Ending -----------------------------------------------------------------------------

    def close_writer(self) -> None:
        """Close the writing side: the peer reads EOF after the frames already written.
        Call it from the thread that writes; idempotent."""
        fd, self._write_fd = self._write_fd, None
        if fd is None:
            return
        if self._sock is None:
            self._poller.unregister(fd)
            os.close(fd)
            return
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
        shared, self.shared = self.shared, None
        if shared is not None:
            shared.close()


# What other protocols send first, for telling a peer that connected to the wrong port
# what it is rather than reading its bytes as a frame header.
_HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                 b"CONNECT ", b"TRACE ", b"PRI * ")
_TEXT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def _not_gilstudy(header: bytes) -> ProtocolError | None:
    """A ProtocolError naming what a bad frame ``header`` really is (an HTTP request, a TLS
    handshake, a line of text), or None when it looks like nothing in particular."""
    if header.startswith(_HTTP_METHODS):
        what = "an HTTP request"
    elif header[0] == 0x16 and header[1] == 0x03:
        what = "a TLS handshake (an https:// or TLS client?)"
    elif all(byte in _TEXT for byte in header):
        what = "text"
    else:
        return None
    return ProtocolError(f"the peer is not a gilstudy end: it sent {what}, beginning "
                         f"{header!r}")


def _skip(pieces: list, count: int) -> list:
    """``pieces`` without their first ``count`` bytes."""
    index = 0
    while True:
        piece = pieces[index]
        size = len(piece) if type(piece) is bytes else piece.nbytes
        if count < size:
            return [memoryview(piece)[count:], *pieces[index + 1:]]
        count -= size
        index += 1


def _buffer_table(read_exactly, name: str, length: int) -> tuple[tuple[int, ...], int]:
    """Read and check the table of out-of-band buffer sizes that opens a frame of
    ``length`` bytes with buffers: return the sizes and the bytes of pickle data left.
    Every size is checked against what is left of ``length`` before it is read or
    allocated, so a lying table costs nothing beyond the frame limit."""
    if length < OOB_COUNT.size:
        raise ProtocolError(f"a {name} frame with buffers of {length} bytes has no room "
                            "for its buffer count")
    (count,) = OOB_COUNT.unpack(read_exactly(OOB_COUNT.size))
    table = OOB_SIZE.size * count
    if not count or OOB_COUNT.size + table > length:
        raise ProtocolError(f"a {name} frame of {length} bytes announces {count} "
                            "out-of-band buffers")
    if count > MAX_BUFFERS:
        raise ProtocolError(f"a {name} frame announces {count} out-of-band buffers, "
                            f"more than the {MAX_BUFFERS} a frame may carry")
    sizes = struct.unpack(f"!{count}Q", read_exactly(table))
    if 0 in sizes:
        raise ProtocolError(f"a {name} frame announces an out-of-band buffer of 0 bytes")
    left = length - OOB_COUNT.size - table - sum(sizes)
    if left < 0:
        raise ProtocolError(f"the out-of-band buffers of a {name} frame of {length} "
                            "bytes add up to more than the frame")
    return sizes, left


def _frame_pieces(frames, peer_max_frame: int) -> list:
    """The headers, payloads and buffers of ``frames`` in writing order, each frame
    refused (ProtocolError) when it is longer than the peer accepts."""
    pieces = []
    for kind, payload, *rest in frames:
        buffers = rest[0] if rest else ()
        length = frame_size(payload, buffers)
        if length > peer_max_frame:
            raise ProtocolError(f"a {KIND_NAMES[kind]} frame of {length} bytes, more "
                                f"than the {peer_max_frame} the peer accepts")
        if buffers:
            pieces.append(HEADER.pack(OOB_KINDS[kind], length))
            pieces.append(OOB_COUNT.pack(len(buffers))
                          + struct.pack(f"!{len(buffers)}Q",
                                        *(view.nbytes for view in buffers)))
            pieces.append(payload)
            pieces.extend(buffers)
        else:
            pieces.append(HEADER.pack(kind, length))
            if payload:
                pieces.append(payload)
    return pieces
