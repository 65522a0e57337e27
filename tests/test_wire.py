# The framed wire protocol on its own: frame layout, clean and broken ends of a stream, the
# HELLO handshake and how errors are encoded. Both ends run in this process, over real
# pipes and socket pairs.

import os
import pickle
import socket
import struct
import threading

import pytest

from gilstudy import wire
from gilstudy.errors import ProtocolError

# Only reached when something deadlocks.
TIMEOUT = 30


@pytest.fixture
def pipe_pair():
    """Two channels joined by two pipes: what one writes the other reads."""
    a_read, b_write = os.pipe()
    b_read, a_write = os.pipe()
    a = wire.Channel.from_fds(a_read, a_write)
    b = wire.Channel.from_fds(b_read, b_write)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def socket_pair():
    left, right = socket.socketpair()
    a = wire.Channel.from_socket(left)
    b = wire.Channel.from_socket(right)
    yield a, b
    a.close()
    b.close()


def raw_pipe():
    """A channel reading from a pipe whose write end the test fills with raw bytes."""
    read_fd, write_fd = os.pipe()
    sink_read, sink_write = os.pipe()
    os.close(sink_read)
    return wire.Channel.from_fds(read_fd, sink_write), write_fd


def test_frame_is_kind_byte_then_big_endian_64_bit_length_then_payload():
    read_fd, write_fd = os.pipe()
    channel = wire.Channel(open(read_fd, "rb"), write_fd)
    channel.write_frame(wire.ITEMS, b"abc")
    channel.close_writer()
    data = channel._reader.read()
    channel.close()
    assert data == b"I" + (3).to_bytes(8, "big") + b"abc"
    assert wire.HEADER.size == 9


def test_frames_arrive_whole_and_in_order(pipe_pair):
    a, b = pipe_pair
    a.write_frame(wire.ITEMS, pickle.dumps([1, 2, 3]))
    a.write_frames([(wire.ACK, wire.ACK_BODY.pack(7)), (wire.DONE, b"")])
    a.write_frame(wire.CLOSE)
    assert b.read_frame() == (wire.ITEMS, pickle.dumps([1, 2, 3]))
    assert b.read_frame() == (wire.ACK, struct.pack("!Q", 7))
    assert b.read_frame() == (wire.DONE, b"")
    assert b.read_frame() == (wire.CLOSE, b"")


def test_a_large_payload_arrives_whole(socket_pair):
    a, b = socket_pair
    payload = os.urandom(3 << 20)
    writer = threading.Thread(target=a.write_frame, args=(wire.RESULTS, payload))
    writer.start()
    assert b.read_frame() == (wire.RESULTS, payload)
    writer.join(TIMEOUT)


def test_eof_between_frames_is_eoferror(pipe_pair):
    a, b = pipe_pair
    a.write_frame(wire.DONE)
    a.close_writer()
    assert b.read_frame() == (wire.DONE, b"")
    with pytest.raises(EOFError):
        b.read_frame()


def test_eof_inside_a_header_is_a_protocol_error():
    channel, write_fd = raw_pipe()
    os.write(write_fd, b"I\x00\x00")
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=r"^the channel closed inside a frame header "
                                            r"\(3 of 9 bytes\)$"):
        channel.read_frame()
    channel.close()


def test_eof_inside_a_payload_is_a_protocol_error():
    channel, write_fd = raw_pipe()
    os.write(write_fd, wire.HEADER.pack(wire.ITEMS, 10) + b"12345")
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=r"^the channel closed inside a ITEMS frame "
                                            r"\(5 of 10 bytes\)$"):
        channel.read_frame()
    channel.close()


def test_an_unknown_kind_is_a_protocol_error():
    channel, write_fd = raw_pipe()
    os.write(write_fd, wire.HEADER.pack(ord("Z"), 0))
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=r"^unknown frame kind 0x5a"):
        channel.read_frame()
    channel.close()


def test_hello_tells_the_peer_pid_and_flags(pipe_pair):
    a, b = pipe_pair
    wire.send_hello(a, pid=1234, flags=wire.WANT_RESULTS)
    wire.send_hello(b, pid=5678)
    assert wire.read_hello(b) == wire.Hello(1234, wire.WANT_RESULTS, wire.MAX_FRAME)
    assert wire.read_hello(a) == wire.Hello(5678, 0, wire.MAX_FRAME)


@pytest.mark.parametrize("payload, message", [
    (wire.HELLO_BODY.pack(b"HTTP", 2, 0, 1, 1 << 20), r"^the peer is not a gilstudy coprocess"),
    (wire.HELLO_BODY.pack(wire.MAGIC, 99, 0, 1, 1 << 20),
     r"^the peer speaks gilstudy wire version 99"),
    (wire.HELLO_BODY.pack(wire.MAGIC, 2, 0, 1, 10),
     r"^the peer announces a frame limit of 10 bytes; the least is 1024$"),
    (b"short", r"^expected a HELLO frame of 18 bytes, got HELLO of 5 bytes$"),
], ids=["wrong-magic", "wrong-version", "tiny-frame-limit", "wrong-size"])
def test_a_bad_hello_is_a_protocol_error(pipe_pair, payload, message):
    a, b = pipe_pair
    a.write_frame(wire.HELLO, payload)
    with pytest.raises(ProtocolError, match=message):
        wire.read_hello(b)


def test_a_first_frame_other_than_hello_is_a_protocol_error(pipe_pair):
    a, b = pipe_pair
    a.write_frame(wire.ITEMS, b"x" * 10)
    with pytest.raises(ProtocolError, match=r"^expected a HELLO frame of 18 bytes, got ITEMS"):
        wire.read_hello(b)


def test_a_hello_that_is_not_gilstudy_is_refused_before_reading_its_claimed_length():
    # "H" reads as a HELLO kind, "TTP/1.1 " as a length of 6 * 10**16 bytes.
    channel, write_fd = raw_pipe()
    os.write(write_fd, b"HTTP/1.1 400 Bad Request\r\n\r\n")
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=r"^a HELLO frame of 6076[0-9]+ bytes, more than "
                                            r"the 18 allowed here$"):
        wire.read_hello(channel)
    channel.close()


class PeculiarError(Exception):
    pass


def test_an_encoded_error_carries_type_message_and_traceback(pipe_pair):
    channel, _ = pipe_pair
    try:
        raise PeculiarError("it went wrong")
    except PeculiarError as exc:
        payload = wire.encode_error(exc)
    remote_type, message, text = wire.decode_error(channel, payload)
    assert remote_type == "test_wire.PeculiarError"
    assert message == "it went wrong"
    assert 'raise PeculiarError("it went wrong")' in text
    assert text.rstrip().endswith(f"(in process {os.getpid()})")


def test_a_builtin_error_type_is_named_without_module(pipe_pair):
    channel, _ = pipe_pair
    remote_type, message, _ = wire.decode_error(channel, wire.encode_error(KeyError("k")))
    assert (remote_type, message) == ("KeyError", "'k'")


def test_an_unreadable_error_frame_is_a_protocol_error(pipe_pair):
    channel, _ = pipe_pair
    with pytest.raises(ProtocolError, match=r"^unreadable ERROR frame"):
        wire.decode_error(channel, b"not a pickle")


def test_shutdown_wakes_a_reader_blocked_in_another_thread(socket_pair):
    a, _ = socket_pair
    outcome = []

    def read():
        try:
            a.read_frame()
        except EOFError:
            outcome.append("eof")

    reader = threading.Thread(target=read)
    reader.start()
    a.shutdown()
    reader.join(TIMEOUT)
    assert outcome == ["eof"]


def test_close_writer_of_a_socket_lets_the_peer_read_eof_while_replies_still_arrive(socket_pair):
    a, b = socket_pair
    a.write_frame(wire.CLOSE)
    a.close_writer()
    assert b.read_frame() == (wire.CLOSE, b"")
    with pytest.raises(EOFError):
        b.read_frame()
    b.write_frame(wire.DONE)
    assert a.read_frame() == (wire.DONE, b"")


def test_pickles_from_the_peer_are_loaded_with_the_channels_loads(pipe_pair):
    a, b = pipe_pair
    seen = []

    def loads(payload):
        seen.append(payload)
        return pickle.loads(payload)

    b.loads = loads
    a.write_frame(wire.ERROR, wire.encode_error(KeyError("k")))
    kind, payload = b.read_frame()
    assert wire.decode_error(b, payload)[0] == "KeyError"
    assert seen == [payload]


def test_close_is_idempotent_and_tolerates_a_vanished_peer(pipe_pair):
    a, b = pipe_pair
    b.close()
    with pytest.raises(BrokenPipeError):
        a.write_frame(wire.ITEMS, b"for nobody")
    a.close()
    a.close()
