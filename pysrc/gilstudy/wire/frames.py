"""The frames of gilstudy's wire protocol: their layout, kinds and limits, and what a frame
reads as. Every other part of gilstudy.wire (the channel, pickling, the handshake) builds on
these definitions; this module does no I/O."""

import collections
import struct
import sys

__all__ = [
    "HEADER", "VERSION", "MAGIC", "PICKLE_PROTOCOL", "KIND_NAMES",
    "HELLO", "NONCE", "PROOF", "SETUP", "ITEMS", "CLOSE", "ACK", "RESULTS", "ERROR", "DONE",
    "ITEMS_OOB", "RESULTS_OOB", "OOB_KINDS", "PLAIN_KINDS", "OOB_COUNT", "OOB_SIZE",
    "WANT_RESULTS", "AUTHENTICATE", "HELLO_BODY", "ACK_BODY", "NONCE_SIZE", "PROOF_SIZE",
    "FLUSH_INTERVAL", "MAX_FRAME", "OUT_OF_BAND_MIN", "MAX_BUFFERS", "Hello", "OutOfBand", "frame_size",
    "receive_buffer",
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
OOB_KINDS = {ITEMS: ITEMS_OOB, RESULTS: RESULTS_OOB}
PLAIN_KINDS = {ITEMS_OOB: ITEMS, RESULTS_OOB: RESULTS}

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
OOB_COUNT = struct.Struct("!I")
OOB_SIZE = struct.Struct("!Q")

# The most out-of-band buffers one frame may carry; a receiver refuses more before it reads
# their sizes, and refuses a buffer of size zero (dumps() never makes one). Each buffer
# costs the receiver a few hundred bytes beside its data, so this bounds that cost at about
# a megabyte a frame; senders split a batch with more across frames.
MAX_BUFFERS = 4096

# The longest an item, a result or an acknowledgement waits in a batch before its frame is
# written, in seconds (plus, for a busy producer thread, one GIL switch interval).
FLUSH_INTERVAL = 0.005

# Protocol 5 (Python 3.8+) on both ends: they run the same gilstudy, hence a recent Python.
PICKLE_PROTOCOL = 5

# What a peer said about itself when the channel opened. (A collections namedtuple, not a
# typing.NamedTuple: a coprocess should not pay for importing typing.)
Hello = collections.namedtuple("Hello", ["pid", "flags", "max_frame"])

# The payload of an ITEMS or RESULTS frame that carried out-of-band buffers: the pickle and
# the buffers, to be loaded together (Channel.load does).
OutOfBand = collections.namedtuple("OutOfBand", ["pickle", "buffers"])


def frame_size(payload: bytes, buffers=()) -> int:
    """The length field of the frame that carries ``payload`` and ``buffers``."""
    if not buffers:
        return len(payload)
    return (OOB_COUNT.size + OOB_SIZE.size * len(buffers) + len(payload)
            + sum(view.nbytes for view in buffers))


def receive_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes for an out-of-band buffer to be read into. Once
    numpy is loaded (the first array's unpickling loads it), numpy.empty: unlike bytearray,
    it does not first fill the memory with zeros, which costs as much as the copy itself."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return memoryview(bytearray(size))
    return memoryview(numpy.empty(size, numpy.uint8))
