"""The framed wire protocol spoken between two gilstudy ends (spawn's parent and child,
connect and serve, two MPI ranks): length-prefixed frames with a size limit (frames), the
channel that reads and writes them (channel), pickling with out-of-band buffers and shared
memory (pickling), restricted unpickling (restricted) and the handshake that opens a
channel, with an HMAC challenge-response on sockets (handshake). Every byte read from a
peer goes through here, so the checks a peer must pass have one home.

Every public name of the submodules is importable from here, as it was when gilstudy.wire
was one module.
"""

from gilstudy.wire.channel import Channel, FrameChannel
from gilstudy.wire.frames import (ACK, ACK_BODY, AUTHENTICATE, CLOSE, DONE, ERROR,
                                  FLUSH_INTERVAL, HEADER, HELLO, HELLO_BODY, ITEMS, ITEMS_OOB,
                                  KIND_NAMES, MAGIC, MAX_BUFFERS, MAX_FRAME, NONCE, NONCE_SIZE,
                                  OUT_OF_BAND_MIN, PICKLE_PROTOCOL, PROOF, PROOF_SIZE, RESULTS,
                                  RESULTS_OOB, SETUP, VERSION, WANT_RESULTS, Hello, OutOfBand,
                                  frame_size, receive_buffer)
from gilstudy.wire.handshake import handshake, proof, read_hello, send_hello
from gilstudy.wire.pickling import decode_error, dumps, dumps_in_frames, encode_error
from gilstudy.wire.restricted import (AMPLIFICATION, BUDGET_FLOOR, NUMPY_ARRAYS, Allowed,
                                      RestrictedUnpickler, budget_for, channel_options,
                                      permits, restricted_loads)

__all__ = [
    "HEADER", "VERSION", "MAGIC", "PICKLE_PROTOCOL", "KIND_NAMES",
    "HELLO", "NONCE", "PROOF", "SETUP", "ITEMS", "CLOSE", "ACK", "RESULTS", "ERROR", "DONE",
    "ITEMS_OOB", "RESULTS_OOB",
    "WANT_RESULTS", "AUTHENTICATE", "HELLO_BODY", "ACK_BODY", "NONCE_SIZE", "PROOF_SIZE",
    "FLUSH_INTERVAL", "MAX_FRAME", "OUT_OF_BAND_MIN", "MAX_BUFFERS", "NUMPY_ARRAYS",
    "AMPLIFICATION", "BUDGET_FLOOR", "Allowed", "budget_for",
    "Channel", "FrameChannel", "Hello", "OutOfBand", "RestrictedUnpickler", "restricted_loads",
    "channel_options", "permits", "receive_buffer",
    "dumps", "frame_size", "dumps_in_frames", "send_hello", "read_hello", "handshake",
    "proof", "encode_error", "decode_error",
]
