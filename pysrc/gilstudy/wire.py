"""The framed wire protocol spoken between two gilstudy ends (spawn's parent and child,
connect and serve): length-prefixed frames with a size limit, the handshake that opens a
channel (with an HMAC challenge-response on sockets), restricted unpickling, out-of-band
buffers for large arrays, and how a remote exception travels. Every byte read from a peer
goes through here, so the checks a peer must pass have one home.
"""

import collections
import collections.abc
import copyreg
import errno
import io
import os
import pickle
import select
import struct
import sys

from gilstudy import _checks
from gilstudy.errors import AuthenticationError, ProtocolError

__all__ = [
    "HEADER", "VERSION", "MAGIC", "PICKLE_PROTOCOL", "KIND_NAMES",
    "HELLO", "NONCE", "PROOF", "SETUP", "ITEMS", "CLOSE", "ACK", "RESULTS", "ERROR", "DONE",
    "ITEMS_OOB", "RESULTS_OOB",
    "WANT_RESULTS", "AUTHENTICATE", "HELLO_BODY", "ACK_BODY", "NONCE_SIZE", "PROOF_SIZE",
    "FLUSH_INTERVAL", "MAX_FRAME", "OUT_OF_BAND_MIN", "NUMPY_ARRAYS",
    "Channel", "Hello", "OutOfBand", "RestrictedUnpickler", "restricted_loads", "channel_options",
    "dumps", "frame_size", "dumps_in_frames", "send_hello", "read_hello", "handshake",
    "proof", "encode_error", "decode_error",
]

# Every frame is a 9-byte header, then ``length`` bytes of body:
#   kind: 1 byte (an ASCII letter, so a hex dump reads), length: unsigned 64-bit, big-endian.
# A receiver refuses a frame whose length exceeds its limit (max_frame) before it reads or
# allocates anything for the body.
HEADER = struct.Struct("!BQ")

# Kinds that open a channel, sent by both ends (see handshake())...
HELLO = ord("H")    # HELLO_BODY: magic, version, flags, pid, the sender's max_frame
NONCE = ord("N")    # NONCE_SIZE random bytes: the challenge (authenticated channels only)
PROOF = ord("P")    # PROOF_SIZE bytes: HMAC-SHA256 answer to the challenges, see proof()
# ...sent by the end that owns the items (the sender)...
SETUP = ord("S")    # spawn only: pickled (sys_path, pickled (factory, args)), see below
ITEMS = ord("I")    # a pickled list of items, in order
ITEMS_OOB = ord("i")  # the same with out-of-band buffers (see OutOfBand)
CLOSE = ord("C")    # empty: close the consumer, report its result, then DONE
# ...and by the end that runs the consumer.
ACK = ord("A")      # ACK_BODY: how many items the consumer has handled so far, in total
RESULTS = ord("R")  # a pickled list of results (non-None values of send() or close())
RESULTS_OOB = ord("r")  # the same with out-of-band buffers
ERROR = ord("E")    # encode_error(): the consumer raised; it handles nothing more
DONE = ord("D")     # empty: the consumer closed cleanly; nothing follows

KIND_NAMES = {HELLO: "HELLO", NONCE: "NONCE", PROOF: "PROOF", SETUP: "SETUP", ITEMS: "ITEMS",
              ITEMS_OOB: "ITEMS", CLOSE: "CLOSE", ACK: "ACK", RESULTS: "RESULTS",
              RESULTS_OOB: "RESULTS", ERROR: "ERROR", DONE: "DONE"}
# A frame with out-of-band buffers reads as its plain kind, with an OutOfBand payload.
_OOB_KINDS = {ITEMS: ITEMS_OOB, RESULTS: RESULTS_OOB}
_PLAIN_KINDS = {ITEMS_OOB: ITEMS, RESULTS_OOB: RESULTS}

MAGIC = b"GSTD"
VERSION = 2
HELLO_BODY = struct.Struct("!4sBBIQ")  # magic, version, flags, pid, max_frame
WANT_RESULTS = 0x01                     # HELLO flag: the sender forwards results, so send them
AUTHENTICATE = 0x02                     # HELLO flag: a NONCE follows; PROOFs are exchanged
ACK_BODY = struct.Struct("!Q")
NONCE_SIZE = 32
PROOF_SIZE = 32   # SHA-256

# The largest frame a channel accepts by default, in bytes, body and buffers included.
MAX_FRAME = 64 << 20

# Out-of-band buffers smaller than this travel inside the pickle: a separate buffer costs
# more than copying a small one.
OUT_OF_BAND_MIN = 1 << 16

# The body of an ITEMS_OOB or RESULTS_OOB frame: the buffer count n (unsigned 32-bit), the
# size of each buffer (n unsigned 64-bit), the pickle (whatever the frame's length leaves),
# then the n buffers, in the order pickle.loads(..., buffers=) takes them; all big-endian.
# The frame's length, checked against the limit before anything is read, covers it all.
_OOB_COUNT = struct.Struct("!I")
_OOB_SIZE = struct.Struct("!Q")

# The longest an item, a result or an acknowledgement waits in a batch before its frame is
# written, in seconds (plus, for a busy producer thread, one GIL switch interval).
FLUSH_INTERVAL = 0.005

# Read buffer: large enough that a batch of small items is one system call.
_BUFFER = 1 << 16

# os.writev and sendmsg take at most IOV_MAX (1024 on Linux) pieces at a time.
_MAX_PIECES = 512

# A writer waiting for a peer to read looks this often (milliseconds) whether its writes
# were cancelled (Channel.cancel_writes) or its patience ran out.
_CANCEL_CHECK_MS = 50

# Protocol 5 (Python 3.8+) on both ends: they run the same gilstudy, hence a recent Python.
PICKLE_PROTOCOL = 5

# The globals a numpy array or scalar needs when loaded with restricted unpickling, for
# numpy 1.x (numpy.core) and 2.x (numpy._core): ``allowed=NUMPY_ARRAYS | {...}``.
NUMPY_ARRAYS = frozenset({
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
})


# What a peer said about itself when the channel opened. (A collections namedtuple, not a
# typing.NamedTuple: a coprocess should not pay for importing typing.)
Hello = collections.namedtuple("Hello", ["pid", "flags", "max_frame"])

# The payload of an ITEMS or RESULTS frame that carried out-of-band buffers: the pickle and
# the buffers, to be loaded together (Channel.load does).
OutOfBand = collections.namedtuple("OutOfBand", ["pickle", "buffers"])


# -- Pickling for frames ----------------------------------------------------------------------

def dumps(obj, shared=None) -> tuple[bytes, list]:
    """Pickle ``obj`` for a frame: ``(payload, buffers)``. Buffers of OUT_OF_BAND_MIN bytes
    or more that ``obj`` exposes with pickle protocol 5 (contiguous numpy arrays do) are
    not copied into the pickle: ``buffers`` holds a memoryview of each, to be written
    after it. With ``shared`` (a gilstudy.shared.SharedMemory, for a peer on this host),
    a pickle that would carry large buffers is made again with numpy arrays of
    shared.SHARED_MIN bytes or more as handles to shared memory instead."""
    buffers = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < OUT_OF_BAND_MIN:
            return True  # in-band
        buffers.append(view)
        return False

    payload = pickle.dumps(obj, PICKLE_PROTOCOL, buffer_callback=out_of_band)
    if shared is None or not (buffers or len(payload) >= _SHARED_WORTH):
        return payload, buffers
    # Pickled twice only when large data showed up: the first pass copied no buffer.
    buffers = []
    stream = io.BytesIO()
    pickler = pickle.Pickler(stream, PICKLE_PROTOCOL, buffer_callback=out_of_band)
    pickler.persistent_id = shared.export
    pickler.dump(obj)
    return stream.getvalue(), buffers


# An in-band pickle this long may hold a large array that pickle copied (a non-contiguous
# one): worth a second pass that moves it through shared memory.
_SHARED_WORTH = 1 << 20


def frame_size(payload: bytes, buffers=()) -> int:
    """The length field of the frame that carries ``payload`` and ``buffers``."""
    if not buffers:
        return len(payload)
    return (_OOB_COUNT.size + _OOB_SIZE.size * len(buffers) + len(payload)
            + sum(view.nbytes for view in buffers))


def dumps_in_frames(items: list, limit: int, shared=None) -> list:
    """Pickle the list ``items`` into as few ``(payload, buffers)`` frames as keep each
    within ``limit`` bytes, in order: the whole list when it fits, else halves, recursively.
    Raises ProtocolError, its ``index`` attribute telling which, when one item alone does
    not fit, and whatever pickle raises for an item that cannot be pickled. ``shared`` as
    for dumps(); afterwards ``shared.moved`` tells how many bytes went through it."""
    frames = []
    try:
        _dump_into(items, 0, limit, frames, shared)
    finally:
        if shared is not None:
            shared.end_dump()
    return frames


def _dump_into(items: list, first: int, limit: int, frames: list, shared) -> None:
    payload, buffers = dumps(items, shared)
    size = frame_size(payload, buffers)
    if size <= limit:
        frames.append((payload, buffers))
        return
    if len(items) == 1:
        exc = ProtocolError(f"a {type(items[0]).__name__} pickles to a frame of {size} bytes, "
                            f"more than the {limit} bytes the peer accepts; raise max_frame "
                            "on both ends to send it")
        exc.index = first
        raise exc
    half = len(items) // 2
    _dump_into(items[:half], first, limit, frames, shared)
    _dump_into(items[half:], first + half, limit, frames, shared)


# -- Restricted unpickling ----------------------------------------------------------------

def _permits(allowed):
    """``allowed`` (a set of "module.qualname" strings, or a callable(module, name) ->
    bool) as a callable; TypeError or ValueError for anything else."""
    if callable(allowed):
        return allowed
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, collections.abc.Iterable):
        raise TypeError(f"allowed must be a set of 'module.name' strings or a callable("
                        f"module, name), got {allowed!r}")
    names = frozenset(allowed)
    for name in names:
        if not isinstance(name, str) or "." not in name.strip("."):
            raise ValueError(f"allowed: each global must be a 'module.name' string, got "
                             f"{name!r}")
    return lambda module, name: f"{module}.{name}" in names


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that loads only the globals (classes, functions) that ``allowed``
    permits; any other raises ProtocolError naming it, before its module is imported.

    ``allowed`` is a set of ``"module.qualname"`` strings (``{"fractions.Fraction"}``) or a
    callable ``(module, qualname) -> bool``. Values pickle builds without a global load
    whatever ``allowed`` says: None, bools, ints, floats, str, bytes, bytearray, tuples,
    lists, dicts, sets and frozensets. Everything pickled by reference needs an entry,
    builtins such as ``builtins.complex`` and ``builtins.slice`` included; numpy arrays
    need NUMPY_ARRAYS.

    It is the pure-Python unpickler, about 15 times slower per item than the C one, on
    purpose: the C unpickler sizes its memo by the index a PUT opcode names, so a pickle of
    30 bytes can make it allocate and clear gigabytes; here the memo is a dict, and memory
    stays proportional to the pickle. (Out-of-band buffers are not parsed: arrays keep
    their speed.)
    """

    def __init__(self, file, *, allowed, buffers=None):
        super().__init__(file, buffers=buffers)
        self._permits = _permits(allowed)

    def find_class(self, module: str, name: str):
        if not self._permits(module, name):
            raise ProtocolError(f"refused to unpickle global '{module}.{name}': it is not "
                                "in allowed")
        return super().find_class(module, name)

    def get_extension(self, code: int) -> None:
        # The stock one returns a global it has loaded before without asking find_class.
        key = copyreg._inverted_registry.get(code)
        if key is None:
            raise ProtocolError(f"unregistered pickle extension code {code}")
        self.append(self.find_class(*key))


def restricted_loads(allowed):
    """A ``loads(data, buffers=None)`` for Channel.loads: pickle.loads when ``allowed`` is
    None, else one that loads through a RestrictedUnpickler. Checks ``allowed`` now."""
    if allowed is None:
        return pickle.loads
    permits = _permits(allowed)

    def loads(data, buffers=None):
        return RestrictedUnpickler(io.BytesIO(data), allowed=permits, buffers=buffers).load()

    return loads


def channel_options(owner: str, max_frame: int, allowed) -> dict:
    """Check ``max_frame`` and ``allowed`` for ``owner`` before anything starts; return them
    as the Channel's keyword options."""
    _checks.max_frame(owner, max_frame)
    try:
        restricted_loads(allowed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{owner}: {exc}") from None
    return {"max_frame": max_frame, "allowed": allowed}


# -- Channels -------------------------------------------------------------------------------

class Channel:
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
        self.max_frame = max_frame
        self.peer_max_frame = max_frame
        self.loads = restricted_loads(allowed)
        self._permits = None if allowed is None else _permits(allowed)
        # A gilstudy.shared.SharedMemory when the peer is a process on this host that
        # takes arrays through shared memory (spawn() sets it), else None.
        self.shared = None
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
        if kind in _PLAIN_KINDS:
            return _PLAIN_KINDS[kind], self._read_out_of_band(kind, length)
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
        # Every size is checked against what is left of ``length`` before it is read or
        # allocated, so a lying table costs nothing beyond the frame limit.
        name = KIND_NAMES[kind]
        if length < _OOB_COUNT.size:
            raise ProtocolError(f"a {name} frame with buffers of {length} bytes has no room "
                                "for its buffer count")
        (count,) = _OOB_COUNT.unpack(self._read_exactly(kind, _OOB_COUNT.size))
        table = _OOB_SIZE.size * count
        if not count or _OOB_COUNT.size + table > length:
            raise ProtocolError(f"a {name} frame of {length} bytes announces {count} "
                                "out-of-band buffers")
        sizes = struct.unpack(f"!{count}Q", self._read_exactly(kind, table))
        left = length - _OOB_COUNT.size - table - sum(sizes)
        if left < 0:
            raise ProtocolError(f"the out-of-band buffers of a {name} frame of {length} "
                                "bytes add up to more than the frame")
        data = self._read_exactly(kind, left)
        buffers = []
        for size in sizes:
            buffer = _receive_buffer(size)
            if self._readinto(buffer) != size:
                raise ProtocolError(f"the channel closed inside an out-of-band buffer of a "
                                    f"{name} frame")
            buffers.append(buffer)
        return OutOfBand(data, buffers)

    def load(self, payload):
        """Unpickle the payload of an ITEMS, RESULTS, SETUP or ERROR frame with ``loads``
        (with the channel's shared memory, if any, for arrays sent as handles). Anything
        that keeps it from loading (a refused global, a malformed pickle, an object whose
        reconstruction raises) raises ProtocolError, the cause chained."""
        if type(payload) is OutOfBand:
            data, buffers = payload.pickle, payload.buffers
        else:
            data, buffers = payload, None
        shared = getattr(self, "shared", None)
        try:
            if shared is None:
                if buffers is None:
                    return self.loads(data)
                return self.loads(data, buffers=buffers)
            if self._permits is None:
                unpickler = pickle.Unpickler(io.BytesIO(data), buffers=buffers)
            else:
                unpickler = RestrictedUnpickler(io.BytesIO(data), allowed=self._permits,
                                                buffers=buffers)
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
        return dumps_in_frames(items, self.peer_max_frame, getattr(self, "shared", None))

    # Writing ----------------------------------------------------------------------------

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
        """Write several ``(kind, payload)`` or ``(kind, payload, buffers)`` frames with one
        system call when the peer keeps up; see write_frame()."""
        pieces = []
        for kind, payload, *rest in frames:
            buffers = rest[0] if rest else ()
            length = frame_size(payload, buffers)
            if length > self.peer_max_frame:
                raise ProtocolError(f"a {KIND_NAMES[kind]} frame of {length} bytes, more "
                                    f"than the {self.peer_max_frame} the peer accepts")
            if buffers:
                pieces.append(HEADER.pack(_OOB_KINDS[kind], length))
                pieces.append(_OOB_COUNT.pack(len(buffers))
                              + struct.pack(f"!{len(buffers)}Q",
                                            *(view.nbytes for view in buffers)))
                pieces.append(payload)
                pieces.extend(buffers)
            else:
                pieces.append(HEADER.pack(kind, length))
                if payload:
                    pieces.append(payload)
        self._write_all(pieces, patience)

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


def _receive_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes for an out-of-band buffer to be read into. Once
    numpy is loaded (the first array's unpickling loads it), numpy.empty: unlike bytearray,
    it does not first fill the memory with zeros, which costs as much as the copy itself."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return memoryview(bytearray(size))
    return memoryview(numpy.empty(size, numpy.uint8))


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


# -- Opening a channel ------------------------------------------------------------------------

def send_hello(channel: Channel, pid: int, flags: int = 0) -> None:
    """Open a channel without authentication (pipes and FIFOs to our own child, sockets
    with insecure=True): tell the peer who we are and the largest frame we read. Both ends
    send a HELLO, then read the peer's with read_hello()."""
    channel.write_frame(HELLO, _hello_body(channel, pid, flags))


def _hello_body(channel: Channel, pid: int, flags: int) -> bytes:
    return HELLO_BODY.pack(MAGIC, VERSION, flags, pid, channel.max_frame)


def read_hello(channel: Channel) -> Hello:
    """Read the peer's HELLO and take its frame limit as the channel's peer_max_frame.
    Raises ProtocolError if the peer is not a gilstudy end of this wire version, EOFError
    if it closed the channel first."""
    kind, payload = channel.read_frame(max_length=HELLO_BODY.size)
    if kind != HELLO or len(payload) != HELLO_BODY.size:
        raise ProtocolError(f"expected a HELLO frame of {HELLO_BODY.size} bytes, got "
                            f"{KIND_NAMES[kind]} of {len(payload)} bytes")
    magic, version, flags, pid, max_frame = HELLO_BODY.unpack(payload)
    if magic != MAGIC:
        raise ProtocolError(f"the peer is not a gilstudy coprocess (magic {magic!r})")
    if version != VERSION:
        raise ProtocolError(f"the peer speaks gilstudy wire version {version}, this end "
                            f"speaks {VERSION}; run the same gilstudy on both ends")
    if max_frame < _checks.MIN_FRAME:
        raise ProtocolError(f"the peer announces a frame limit of {max_frame} bytes; the "
                            f"least is {_checks.MIN_FRAME}")
    channel.peer_max_frame = max_frame
    return Hello(pid, flags, max_frame)


# What each end's proof starts with: the role binds a proof to one direction, so neither
# end's proof can be sent back to it as the other's.
_PROOF_LABELS = {False: b"gilstudy wire 2, connecting end\n",
                 True: b"gilstudy wire 2, accepting end\n"}


def proof(authkey: bytes, accepting: bool, connecting_nonce: bytes,
          accepting_nonce: bytes) -> bytes:
    """The PROOF an end sends: HMAC-SHA256 keyed with ``authkey`` over its role label
    (``b"gilstudy wire 2, connecting end\\n"`` or ``b"gilstudy wire 2, accepting end\\n"``),
    then the connecting end's nonce, then the accepting end's (32 bytes each)."""
    import hmac

    message = _PROOF_LABELS[accepting] + connecting_nonce + accepting_nonce
    return hmac.new(authkey, message, "sha256").digest()


def handshake(channel: Channel, *, pid: int, flags: int = 0, authkey: bytes | None = None,
              accepting: bool) -> Hello:
    """Open a channel; return the peer's Hello. ``accepting`` is true for the end that
    accepted the connection (serve(), spawn()'s parent), false for the end that made it.

    Without ``authkey``: each end sends HELLO and reads the peer's. With it, each end
    proves to the other that it holds the same key, before anything is unpickled::

        connecting end                                 accepting end
        HELLO (flags | AUTHENTICATE), NONCE n_c   ->
                                                  <-   HELLO (flags | AUTHENTICATE), NONCE n_a
        PROOF proof(key, False, n_c, n_a)         ->   checked with hmac.compare_digest;
                                                       on failure the connection is closed
                                                  <-   PROOF proof(key, True, n_c, n_a)
        checked with hmac.compare_digest

    Nonces are NONCE_SIZE bytes from os.urandom, fresh for every handshake, so a recorded
    handshake replayed to either end fails. Raises AuthenticationError when the peer fails
    its proof, closes the channel where a proof was due, or does not authenticate while
    this end does (or the reverse); ProtocolError when the peer is not a gilstudy end;
    EOFError when it closed before its HELLO.
    """
    if authkey is None:
        send_hello(channel, pid, flags)
        hello = read_hello(channel)
        if hello.flags & AUTHENTICATE:
            raise AuthenticationError("the peer requires a key and this end has none; pass "
                                      "authkey= or set GILSTUDY_AUTHKEY")
        return hello
    mine = os.urandom(NONCE_SIZE)
    channel.write_frames([(HELLO, _hello_body(channel, pid, flags | AUTHENTICATE)),
                          (NONCE, mine)])
    hello = read_hello(channel)
    if not hello.flags & AUTHENTICATE:
        raise AuthenticationError("the peer does not authenticate (it runs with "
                                  "insecure=True) and this end has a key")
    kind, theirs = channel.read_frame(max_length=NONCE_SIZE)
    if kind != NONCE or len(theirs) != NONCE_SIZE:
        raise AuthenticationError(f"expected a NONCE frame of {NONCE_SIZE} bytes, got "
                                  f"{KIND_NAMES[kind]} of {len(theirs)} bytes")
    nonces = (theirs, mine) if accepting else (mine, theirs)
    if accepting:
        _check_proof(channel, proof(authkey, False, *nonces))
        channel.write_frame(PROOF, proof(authkey, True, *nonces))
    else:
        channel.write_frame(PROOF, proof(authkey, False, *nonces))
        _check_proof(channel, proof(authkey, True, *nonces))
    return hello


def _check_proof(channel: Channel, expected: bytes) -> None:
    import hmac

    try:
        kind, answer = channel.read_frame(max_length=PROOF_SIZE)
    except (EOFError, ConnectionResetError):
        raise AuthenticationError("the peer closed the connection instead of proving that "
                                  "it holds the key (a different key?)") from None
    if kind != PROOF or not hmac.compare_digest(answer, expected):
        raise AuthenticationError("the peer failed to prove that it holds the key")


# -- Errors -----------------------------------------------------------------------------------

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
        remote_type, message, text = channel.load(payload)
    except Exception as exc:
        raise ProtocolError(f"unreadable ERROR frame: {exc}") from exc
    return str(remote_type), str(message), str(text)
