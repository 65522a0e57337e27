"""Large numpy arrays between two ends on one host, through shared memory: each array lives in
an anonymous memory file (memfd_create) whose descriptor crosses a Unix socket beside the
channel (SCM_RIGHTS), while the frame carries only a small handle. The kernel frees a
segment with its last descriptor and mapping, so nothing outlives the two processes.
"""

import errno
import mmap
import os
import select
import struct
import sys
import weakref
from typing import Any

from gilstudy import _checks
from gilstudy.errors import ProtocolError

__all__ = ["SHARED_MIN", "POOL_BYTES", "SHARED_IN_FLIGHT", "shared_array", "is_shared",
           "SharedMemory", "InFlight", "side_pair"]

# Arrays of at least this many bytes travel through shared memory; smaller ones are copied
# through the stream, where a separate segment would cost more than the copy.
SHARED_MIN = 1 << 20

# Segments a sender keeps mapped for reuse, in bytes. Faulting fresh pages in costs more
# than the copy itself, so a sender copies into segments the receiver has released.
POOL_BYTES = 1 << 30

# The most bytes of arrays in shared memory that a sender has sent and its peer not yet
# acknowledged: the batch that would exceed it waits (one larger array alone still goes).
SHARED_IN_FLIGHT = 1 << 30

# Every segment starts with one page of header; the data follows. Byte 0 of a pooled
# segment says who holds it: _BUSY while the receiver may use it (a new segment's zero),
# _FREE once the receiver dropped every array over it, so the sender may write it again.
HEADER = mmap.PAGESIZE
_BUSY, _FREE = 0, 1
_BUSY_BYTE, _FREE_BYTE = bytes([_BUSY]), bytes([_FREE])

# The first element of a persistent id that names a segment (see SharedMemory.export).
_MARK = "gilstudy.shared"

# One message on the side socket: its number, then one descriptor as ancillary data.
_NUMBER = struct.Struct("!Q")

# How long a receiver waits for the descriptor a frame names (sent before the frame, so it
# is normally there at once) before calling the peer broken, in seconds.
_FD_TIMEOUT = 10.0

# A sender blocked on a full side socket looks this often (ms) whether it was cancelled.
_CANCEL_CHECK_MS = 50


def _libc():
    # mmap(2) and munmap(2) themselves: Python's mmap keeps a duplicate of the descriptor
    # open for as long as the mapping lives (until 3.13's trackfd=False), and a consumer
    # that keeps a thousand arrays would hold a thousand descriptors.
    global _LIBC
    if _LIBC is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long)
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _LIBC = libc
    return _LIBC


_LIBC = None


def _map(fd: int, size: int):
    """The first ``size`` bytes of the memory file ``fd``, mapped shared and writable, as a
    ctypes char array (a buffer numpy arrays can lie over, and check their bounds
    against); ``address`` and ``size`` are set on it. Unmapped by _unmap()."""
    import ctypes

    address = _libc().mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED,
                           fd, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        number = ctypes.get_errno()
        raise OSError(number, f"mmap of a shared segment of {size} bytes: "
                              f"{os.strerror(number)}")
    segment = (ctypes.c_char * size).from_address(address)
    segment.address = address
    segment.size = size
    return segment


def _unmap(address: int, size: int, fd: int, release: bool) -> None:
    """A segment's end here: mark it released for its sender (``release``), unmap it, and
    close its descriptor (``fd`` >= 0)."""
    if release:
        import ctypes

        ctypes.memset(address, _FREE, 1)
    _libc().munmap(address, size)
    if fd >= 0:
        os.close(fd)


# madvise(2) advice (Linux numbers): ask for transparent huge pages, and fault a range in,
# writable, in one call (Linux 5.14+).
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", 14)
_MADV_POPULATE_WRITE = 23


def _prefault(segment) -> None:
    """Make ``segment``'s pages before it is written whole: huge pages where the kernel
    gives them to shared memory on request (shmem_enabled "advise"), then every page
    allocated and mapped writable in one call, which costs far less than a fault per page
    during the copy. Best effort: where the kernel refuses either, the copy faults the
    pages in as before."""
    libc = _libc()
    libc.madvise(segment.address, segment.size, _MADV_HUGEPAGE)
    libc.madvise(segment.address, segment.size, _MADV_POPULATE_WRITE)


def _new_segment(capacity: int, prefault: bool = False):
    """A new memory file of HEADER + ``capacity`` bytes, mapped here (its pages made at
    once with ``prefault``, for a segment about to be written whole); it keeps its
    descriptor as ``fd`` (to send) and is unmapped and closed once garbage, or by
    ``segment.end()``."""
    fd = os.memfd_create("gilstudy-array", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, HEADER + capacity)
        segment = _map(fd, HEADER + capacity)
        if prefault:
            _prefault(segment)
    except BaseException:
        os.close(fd)
        raise
    segment.fd = fd
    segment.capacity = capacity
    segment.end = weakref.finalize(segment, _unmap, segment.address, segment.size, fd, False)
    segment.end.atexit = False
    return segment


def _numpy():
    import numpy

    return numpy


def shared_array(shape, dtype=float, order: str = "C"):
    """A new numpy array of ``shape`` and ``dtype`` (C or Fortran ``order``), filled with
    zeros, that already lives in shared memory: sending it to a spawned coprocess (as an
    item, inside an item, or a result coming back) passes only a handle, whatever its
    size, and the consumer gets an array over the same memory. So do views of it (slices,
    transposes, reshapes). Arrays of object dtype are refused (TypeError): their elements
    are pointers into this process.

    Who may write, and when: both ends see the same bytes. Fill it before send(); until the
    consumer has handled the item (its result arrived, or ``acknowledged`` passed it) do
    not write to it, or the consumer may see a half-written array. The consumer may write
    to what it got, and the sender sees those writes. The memory is freed when the last
    array over it, in either process, is gone, or when the processes end, however they
    end. Each such array holds one file descriptor while it lives.
    """
    numpy = _numpy()
    dtype = numpy.dtype(dtype)
    if dtype.hasobject:
        raise TypeError(f"shared_array: dtype must not hold Python objects, got {dtype}")
    if order not in ("C", "F"):
        raise ValueError(f"shared_array: order must be 'C' or 'F', got {order!r}")
    dims = (shape,) if not isinstance(shape, tuple) else shape
    dims = tuple(_checks.integer("shared_array", "shape", dim, maximum=None) for dim in dims)
    count = 1
    for dim in dims:
        count *= dim
    nbytes = count * dtype.itemsize
    if nbytes > sys.maxsize - HEADER:
        raise OverflowError(f"shared_array: shape {dims} of {dtype} needs {nbytes} bytes, "
                            "more than a mapping can hold")
    segment = _new_segment(nbytes)
    return numpy.ndarray(dims, dtype, buffer=segment, offset=HEADER, order=order)


def _owning_segment(array):
    """The segment of a shared_array() that ``array`` lies in (a view's base chain ends at
    it), or None."""
    base = array.base
    while base is not None:
        if getattr(base, "fd", -1) >= 0 and getattr(base, "end", None) is not None:
            return base
        base = getattr(base, "base", None)
    return None


def is_shared(array) -> bool:
    """Whether ``array`` lives in memory from shared_array(), so that sending it passes only
    a handle."""
    return _owning_segment(array) is not None


def side_pair():
    """Two connected Unix sockets for the descriptors of one channel: ``(near, far)``. The
    far one goes to the other end (spawn() passes it to its child)."""
    import socket

    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class SharedMemory:
    """One end's share of the memory of a channel to a process on this host, over ``side``,
    a connected AF_UNIX SOCK_SEQPACKET socket (see side_pair()), which it owns.

    Sending: export(), a pickler's persistent_id, turns each numpy array of SHARED_MIN
    bytes or more (no object dtype, not a subclass) into a handle: an array from
    shared_array() as it is (its descriptor crosses again, no copy), any other copied once
    into a pooled segment. Receiving: attach(), an unpickler's persistent_load, maps the
    segment a handle names and returns an array over it, copying nothing; loaded() ends a
    frame. Descriptors cross ahead of the frame that names them, numbered, in order.

    Trouble: a side socket that breaks raises ConnectionError (the peer is gone); memory
    or descriptors that run out raise OSError (ENOMEM, EMFILE); a handle that
    names a descriptor that never came, or an array that does not fit its segment, raises
    ProtocolError. close() releases every descriptor and mapping held here; what the peer
    has mapped stays valid until it lets go, and the kernel frees each segment then.
    """

    def __init__(self, side):
        self._side = side
        side.setblocking(False)
        self._poller = select.poll()
        self._poller.register(side.fileno(), select.POLLOUT)
        self._cancelled = False
        self._numbers_out = 0
        self._numbers_in = 0
        self._fds_in: dict[int, int] = {}
        self._frame: dict[int, Any] = {}
        self._pool: list = []
        self._exports: dict[int, tuple] = {}
        # Bytes of arrays exported since the last end_dump(), and what the last dump moved.
        self.exported_bytes = 0
        self.moved = 0

    # Sending ------------------------------------------------------------------------------

    def export(self, obj):
        """persistent_id for a pickler: a handle for a large numpy array, None otherwise."""
        numpy = sys.modules.get("numpy")
        if numpy is None or type(obj) is not numpy.ndarray:
            return None
        if obj.nbytes < SHARED_MIN or obj.dtype.hasobject:
            return None
        known = self._exports.get(id(obj))
        if known is not None:
            return known[1]
        segment = _owning_segment(obj)
        if segment is not None:
            offset = obj.__array_interface__["data"][0] - segment.address
            handle = (_MARK, self._pass(segment.fd), False, offset, obj.shape, obj.dtype,
                      obj.strides)
        else:
            segment = self._take(obj.nbytes)
            order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
            copy = numpy.ndarray(obj.shape, obj.dtype, buffer=segment, offset=HEADER,
                                 order=order)
            if obj.dtype.fields is None:
                numpy.copyto(copy, obj, casting="no")
            else:
                # Records are copied whole, padding included, as pickle would: a copy
                # field by field would leave the padding bytes behind.
                whole = numpy.dtype((numpy.void, obj.dtype.itemsize))
                numpy.copyto(copy.view(whole), obj.view(whole), casting="no")
            handle = (_MARK, self._pass(segment.fd), True, HEADER, obj.shape, obj.dtype,
                      copy.strides)
            del copy
        self._exports[id(obj)] = (obj, handle)
        self.exported_bytes += obj.nbytes
        return handle

    def end_dump(self) -> None:
        """Forget the arrays exported for one batch (a batch pickled again, split in two,
        exports each array once); ``moved`` tells the bytes they held."""
        self._exports.clear()
        self.moved, self.exported_bytes = self.exported_bytes, 0

    def _take(self, nbytes: int):
        """A pooled segment for ``nbytes``, released by the receiver, else a new one."""
        pool = self._pool
        for index, segment in enumerate(pool):
            if segment[0] == _FREE_BYTE and nbytes <= segment.capacity <= _roomy(nbytes):
                del pool[index]
                break
        else:
            # Capacity rounded up to a MiB, so arrays of nearly the same size share segments.
            # Its pages are made before the copy (see _prefault).
            segment = _new_segment(-(-nbytes // (1 << 20)) * (1 << 20), prefault=True)
        segment[0] = _BUSY_BYTE
        pool.append(segment)
        self._trim()
        return segment

    def _trim(self) -> None:
        # Beyond POOL_BYTES, let go of the oldest segments, released ones first; one still
        # in use lives on in the receiver's mapping until it lets go.
        pool = self._pool
        while len(pool) > 1 and sum(segment.capacity for segment in pool) > POOL_BYTES:
            index = next((i for i, s in enumerate(pool[:-1]) if s[0] == _FREE_BYTE), 0)
            pool.pop(index).end()

    def _pass(self, fd: int) -> int:
        """Send ``fd`` to the peer as the next numbered message; return its number."""
        import socket

        number = self._numbers_out
        message = [_NUMBER.pack(number)]
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
        while True:
            try:
                self._side.sendmsg(message, ancillary)
                break
            except BlockingIOError:
                pass
            while not self._poller.poll(_CANCEL_CHECK_MS):
                if self._cancelled:
                    raise BrokenPipeError(errno.EPIPE, "writes to this channel were cancelled")
        self._numbers_out = number + 1
        return number

    def cancel(self) -> None:
        """From any thread: a send waiting on a full side socket gives up (BrokenPipeError)
        within 50 ms."""
        self._cancelled = True

    # Receiving ----------------------------------------------------------------------------

    def attach(self, handle):
        """persistent_load for an unpickler: the array a handle from export() names, over
        the peer's segment. ProtocolError for anything else."""
        if type(handle) is not tuple or len(handle) != 7 or handle[0] != _MARK:
            raise ProtocolError(f"unknown persistent id in a pickle from the peer: "
                                f"{handle!r:.80}")
        _, number, pooled, offset, shape, dtype, strides = handle
        numpy = _numpy()
        if not isinstance(dtype, numpy.dtype) or dtype.hasobject:
            raise ProtocolError(f"a shared array of dtype {dtype!r} was refused: only plain "
                                "data may cross in shared memory")
        segment = self._frame.get(number)
        if segment is None:
            fd = self._fd(number)
            try:
                size = os.fstat(fd).st_size
                if size < HEADER:
                    raise ProtocolError(f"shared segment {number} holds {size} bytes, less "
                                        "than its header")
                segment = _map(fd, size)
            finally:
                os.close(fd)  # the mapping holds the memory; no descriptor is kept
            weakref.finalize(segment, _unmap, segment.address, size, -1,
                             bool(pooled)).atexit = False
            self._frame[number] = segment
        try:
            return numpy.ndarray(shape, dtype, buffer=segment, offset=offset, strides=strides)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"a shared array does not fit its segment: {exc}") from None

    def loaded(self) -> None:
        """A frame is loaded: its mappings now live only in the arrays over them."""
        self._frame.clear()

    def _fd(self, number: int) -> int:
        """The descriptor sent as message ``number``, reading messages up to it."""
        fds = self._fds_in
        while number not in fds:
            if number < self._numbers_in:
                raise ProtocolError(f"shared segment {number} was named twice")
            self._receive()
        return fds.pop(number)

    def _receive(self) -> None:
        import socket

        poller = select.poll()
        poller.register(self._side.fileno(), select.POLLIN)
        if not poller.poll(_FD_TIMEOUT * 1000):
            raise ProtocolError(f"a frame names shared segment {self._numbers_in}, whose "
                                f"descriptor did not come within {_FD_TIMEOUT:g} s")
        fds = []
        message, ancillary, flags, _ = self._side.recvmsg(
            _NUMBER.size, socket.CMSG_SPACE(struct.calcsize("i")))
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(struct.unpack(f"{len(data) // 4}i", data[:len(data) // 4 * 4]))
        if not message:
            for fd in fds:
                os.close(fd)
            raise EOFError("the peer closed its side socket")
        number = _NUMBER.unpack(message)[0] if len(message) == _NUMBER.size else None
        if number != self._numbers_in or len(fds) != 1 or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise ProtocolError(f"malformed message on the side socket (number {number}, "
                                f"{len(fds)} descriptors, expected number "
                                f"{self._numbers_in} with one)")
        os.set_inheritable(fds[0], False)
        self._fds_in[number] = fds[0]
        self._numbers_in = number + 1

    # Ending -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the side socket and every descriptor and mapping held here; idempotent."""
        self._frame.clear()
        self._exports.clear()
        while self._fds_in:
            os.close(self._fds_in.popitem()[1])
        while self._pool:
            self._pool.pop().end()
        self._side.close()


def _roomy(nbytes: int) -> int:
    # The largest segment worth reusing for ``nbytes``: a quarter more, plus the rounding.
    return nbytes + nbytes // 4 + (1 << 20)


class InFlight:
    """The arrays a sender has moved through shared memory and its peer not yet
    acknowledged, frame by frame, so that a producer faster than its consumer waits
    instead of filling the machine's memory with copies (gilstudy.remote asks it)."""

    def __init__(self, limit: int | None = None):
        import collections

        self.limit = SHARED_IN_FLIGHT if limit is None else limit
        self.frames = collections.deque()   # (items sent once the frame went, bytes)
        self.bytes = 0

    def add(self, through: int, nbytes: int) -> None:
        """A frame moved ``nbytes`` and took the items sent to ``through``."""
        self.frames.append((through, nbytes))
        self.bytes += nbytes

    def awaits(self, acknowledged: int) -> int | None:
        """None when there is room (``acknowledged`` items handled so far); else how many
        items must be acknowledged before the next batch may go."""
        frames = self.frames
        while frames and frames[0][0] <= acknowledged:
            self.bytes -= frames.popleft()[1]
        return frames[0][0] if self.bytes >= self.limit else None
