# The framed wire protocol on its own: frame layout, clean and broken ends of a stream, frame
# limits and out-of-band buffers, restricted unpickling, the handshake with and without a
# key, how long a write waits for a peer that reads nothing, and how errors are encoded. Both ends run in this process, over real
# pipes and socket pairs.

import os
import pickle
import socket
import struct
import threading
import time

import pytest

from gilstudy import wire
from gilstudy.errors import AuthenticationError, ProtocolError

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


@pytest.mark.parametrize("first_bytes, message", [
    (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
     r"the peer is not a gilstudy end: it sent an HTTP request, beginning b'HEAD / HT'"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n",
     r"the peer is not a gilstudy end: it sent text, beginning b'HTTP/1.1 '"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
     r"the peer is not a gilstudy end: it sent a TLS handshake \(an https:// or TLS client\?\), "
     r"beginning b'\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc'"),
    (b"H\xff\xfe\x00\x01\x02\x03\x04\x05" + bytes(40),
     r"a HELLO frame of 1844[0-9]{16} bytes, more than the 18 allowed here"),
], ids=["http-request", "http-response", "tls", "binary"])
def test_a_peer_that_is_not_gilstudy_is_named_for_what_it_sent_before_reading_more(first_bytes,
                                                                                  message):
    # "HEAD / HT" would read as a HELLO frame of 6 * 10**16 bytes: nothing that long is read.
    channel, write_fd = raw_pipe()
    os.write(write_fd, first_bytes)
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=rf"^{message}$"):
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


# --- Out-of-band buffers and frame limits ---------------------------------------------------

def test_a_large_array_travels_out_of_band_and_arrives_writable(socket_pair):
    np = pytest.importorskip("numpy")
    a, b = socket_pair
    array = np.arange(1 << 17, dtype=np.int64)  # 1 MiB
    payload, buffers = wire.dumps([array])
    assert len(payload) < 1024 and [view.nbytes for view in buffers] == [1 << 20]
    writer = threading.Thread(target=a.write_frame, args=(wire.ITEMS, payload, buffers))
    writer.start()
    kind, received = b.read_frame()
    writer.join(TIMEOUT)
    assert kind == wire.ITEMS and isinstance(received, wire.OutOfBand)
    [copy] = b.load(received)
    assert copy.flags.writeable and (copy == array).all()


def test_an_out_of_band_frame_is_count_sizes_pickle_then_buffers():
    read_fd, write_fd = os.pipe()
    channel = wire.Channel(open(read_fd, "rb"), write_fd)
    channel.write_frame(wire.RESULTS, b"PICKLE", [memoryview(b"one"), memoryview(b"three")])
    channel.close_writer()
    data = channel._reader.read()
    channel.close()
    body = ((2).to_bytes(4, "big") + (3).to_bytes(8, "big") + (5).to_bytes(8, "big")
            + b"PICKLE" + b"one" + b"three")
    assert data == b"r" + len(body).to_bytes(8, "big") + body


def test_small_buffers_stay_in_band():
    np = pytest.importorskip("numpy")
    _, buffers = wire.dumps([np.zeros(wire.OUT_OF_BAND_MIN // 8 - 1)])
    assert buffers == []


@pytest.mark.parametrize("body, message", [
    (b"\x00\x00", r"has no room for its buffer count"),
    ((0).to_bytes(4, "big"), r"announces 0 out-of-band buffers"),
    ((10**6).to_bytes(4, "big"), r"announces 1000000 out-of-band buffers"),
    ((1).to_bytes(4, "big") + (1 << 40).to_bytes(8, "big"), r"add up to more than the frame"),
], ids=["no-count", "no-buffers", "table-longer-than-frame", "buffers-longer-than-frame"])
def test_a_lying_buffer_table_is_a_protocol_error_before_any_allocation(body, message):
    channel, write_fd = raw_pipe()
    os.write(write_fd, wire.HEADER.pack(wire.ITEMS_OOB, len(body)) + body)
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=message):
        channel.read_frame()
    channel.close()


def test_a_frame_longer_than_max_frame_is_refused_before_it_is_read():
    channel, write_fd = raw_pipe()
    channel.max_frame = 4096
    os.write(write_fd, wire.HEADER.pack(wire.ITEMS, 4097) + b"x" * 100)
    os.close(write_fd)
    with pytest.raises(ProtocolError, match=r"^a ITEMS frame of 4097 bytes, more than the 4096 "
                                            r"allowed here$"):
        channel.read_frame()
    channel.close()


def test_write_frame_refuses_a_frame_longer_than_the_peer_accepts(pipe_pair):
    a, b = pipe_pair
    a.peer_max_frame = 1024
    with pytest.raises(ProtocolError, match=r"^a ITEMS frame of 1025 bytes, more than the 1024 "
                                            r"the peer accepts$"):
        a.write_frame(wire.ITEMS, b"x" * 1025)


def test_dumps_in_frames_splits_a_batch_to_fit_and_keeps_the_order():
    items = [bytes([i]) * 1000 for i in range(10)]
    frames = wire.dumps_in_frames(items, 4096)
    assert len(frames) > 1
    assert all(wire.frame_size(*frame) <= 4096 for frame in frames)
    assert [item for payload, _ in frames for item in pickle.loads(payload)] == items


def test_dumps_in_frames_names_the_item_too_large_for_any_frame():
    items = [b"small", b"x" * 5000, b"small"]
    with pytest.raises(ProtocolError, match=r"^a bytes pickles to a frame of \d+ bytes, more "
                                            r"than the 4096 bytes the peer accepts") as info:
        wire.dumps_in_frames(items, 4096)
    assert info.value.index == 1


# --- Restricted unpickling ------------------------------------------------------------------

class Point:
    def __init__(self, x):
        self.x = x


def test_restricted_loads_loads_the_globals_allowed():
    loads = wire.restricted_loads({"test_wire.Point"})
    assert loads(pickle.dumps([Point(3)]))[0].x == 3


def test_restricted_loads_refuses_any_other_global_naming_it():
    loads = wire.restricted_loads({"test_wire.Point"})
    with pytest.raises(ProtocolError, match=r"^refused to unpickle global 'posix\.system': "
                                            r"it is not in allowed$"):
        loads(pickle.dumps(os.system))


def test_a_refused_module_is_never_imported():
    payload = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x0bno_such_mod\x8c\x01f\x93."
    with pytest.raises(ProtocolError, match=r"'no_such_mod\.f'"):
        wire.restricted_loads(set())(payload)


def test_builtin_containers_and_scalars_need_no_global():
    value = [None, True, 1, 2.5, "s", b"b", bytearray(b"a"), (1,), {"k": {1, 2}}, frozenset()]
    assert wire.restricted_loads(set())(pickle.dumps(value, 5)) == value


def test_allowed_may_be_a_callable_of_module_and_name():
    seen = []

    def allowed(module, name):
        seen.append((module, name))
        return module == "fractions"

    import fractions
    loads = wire.restricted_loads(allowed)
    assert loads(pickle.dumps(fractions.Fraction(1, 3))) == fractions.Fraction(1, 3)
    assert seen == [("fractions", "Fraction")]


def test_numpy_arrays_load_with_numpy_arrays_allowed():
    np = pytest.importorskip("numpy")
    loads = wire.restricted_loads(wire.NUMPY_ARRAYS)
    array = np.arange(6.0).reshape(2, 3)
    payload, buffers = wire.dumps([array, array[:, ::2], np.float32(1.5), np.zeros(1 << 14)])
    loaded = loads(payload, buffers=[bytearray(view) for view in buffers])
    assert (loaded[0] == array).all() and (loaded[1] == array[:, ::2]).all()
    assert loaded[2] == np.float32(1.5) and loaded[3].sum() == 0


@pytest.mark.parametrize("allowed, error, message", [
    ("os.path", TypeError, r"^allowed must be a set of 'module\.name' strings"),
    (42, TypeError, r"^allowed must be a set of 'module\.name' strings"),
    ({"Point"}, ValueError, r"^allowed: each global must be a 'module\.name' string, got "
                            r"'Point'$"),
], ids=["a-string", "a-number", "no-module"])
def test_a_malformed_allowed_is_refused_at_once(allowed, error, message):
    with pytest.raises(error, match=message):
        wire.restricted_loads(allowed)


def test_load_turns_a_malformed_pickle_into_a_protocol_error(pipe_pair):
    a, _ = pipe_pair
    with pytest.raises(ProtocolError, match=r"^unreadable pickle from the peer: "):
        a.load(b"\x80\x05not a pickle")


# --- The handshake --------------------------------------------------------------------------

def handshake_both(left_key, right_key, **kwargs):
    """Run the handshake between two socket-pair channels, the right end accepting; return
    what each end returned or raised."""
    left, right = socket.socketpair()
    a, b = wire.Channel.from_socket(left), wire.Channel.from_socket(right)
    outcome = {}

    def run(name, channel, key, accepting):
        try:
            outcome[name] = wire.handshake(channel, pid=os.getpid(), authkey=key,
                                           accepting=accepting, **kwargs)
        except Exception as exc:
            outcome[name] = exc
            channel.close()  # a failing end closes the connection

    accepter = threading.Thread(target=run, args=("accepting", b, right_key, True))
    accepter.start()
    run("connecting", a, left_key, False)
    accepter.join(TIMEOUT)
    a.close()
    b.close()
    return outcome["connecting"], outcome["accepting"]


def test_ends_with_the_same_key_open_the_channel():
    connecting, accepting = handshake_both(b"key", b"key", flags=wire.WANT_RESULTS)
    assert connecting.flags & wire.AUTHENTICATE and accepting.flags & wire.AUTHENTICATE
    assert accepting.flags & wire.WANT_RESULTS


def test_a_wrong_key_fails_on_both_ends():
    connecting, accepting = handshake_both(b"right", b"wrong")
    assert isinstance(accepting, AuthenticationError)
    assert str(accepting) == "the peer failed to prove that it holds the key"
    assert isinstance(connecting, AuthenticationError)


@pytest.mark.parametrize("left, right", [(None, b"key"), (b"key", None)],
                         ids=["connecting-end-without-key", "accepting-end-without-key"])
def test_one_end_without_a_key_fails_on_both_ends(left, right):
    connecting, accepting = handshake_both(left, right)
    assert isinstance(connecting, AuthenticationError)
    assert isinstance(accepting, AuthenticationError)


def test_each_proof_binds_the_role():
    nonces = (b"c" * 32, b"a" * 32)
    assert wire.proof(b"k", True, *nonces) != wire.proof(b"k", False, *nonces)
    assert wire.proof(b"k", False, *nonces) != wire.proof(b"k", False, *reversed(nonces))


def test_a_replayed_handshake_is_refused():
    # Record what a connecting end with the key sends, then replay it on a new connection.
    left, right = socket.socketpair()
    server = wire.Channel.from_socket(right)
    accepter = threading.Thread(target=wire.handshake, args=(server,),
                                kwargs={"pid": 1, "authkey": b"key", "accepting": True})
    accepter.start()
    client = wire.Channel.from_socket(left)
    sent = []
    writev = client._writev
    client._writev = lambda pieces: sent.append(b"".join(bytes(p) for p in pieces)) or writev(
        pieces)
    wire.handshake(client, pid=2, authkey=b"key", accepting=False)
    accepter.join(TIMEOUT)
    client.close()
    server.close()

    left, right = socket.socketpair()
    server = wire.Channel.from_socket(right)
    left.sendall(b"".join(sent))
    with pytest.raises(AuthenticationError, match=r"failed to prove"):
        wire.handshake(server, pid=1, authkey=b"key", accepting=True)
    server.close()
    left.close()


# --- Writes never block without limit -------------------------------------------------------

class Patience:
    """Gives up once ``timeout`` seconds pass without the peer reading: the protocol
    Channel.write_frame takes (gilstudy.flow.Patience is the real one)."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.moved()

    def moved(self):
        self.since = time.monotonic()

    def stalled(self):
        return time.monotonic() - self.since > self.timeout


def test_a_write_the_peer_does_not_read_times_out_when_its_patience_runs_out(pipe_pair):
    a, _ = pipe_pair
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^the peer stopped reading$"):
        a.write_frame(wire.ITEMS, b"x" * (4 << 20), patience=Patience(0.2))
    assert 0.2 <= time.monotonic() - start < 2


def test_a_write_the_peer_reads_slowly_never_runs_out_of_patience(pipe_pair):
    # The peer reads 64 KiB every 50 ms: 4 MiB take about 3 s, 15 times the patience.
    a, b = pipe_pair
    received = []

    def read_slowly():
        while sum(received) < (4 << 20):
            time.sleep(0.05)
            received.append(len(os.read(b._reader.fileno(), 1 << 16)))

    reader = threading.Thread(target=read_slowly)
    reader.start()
    a.write_frame(wire.ITEMS, b"x" * ((4 << 20) - wire.HEADER.size), patience=Patience(0.2))
    reader.join(TIMEOUT)
    assert sum(received) == 4 << 20


def test_cancel_writes_releases_a_writer_blocked_in_another_thread(pipe_pair):
    a, _ = pipe_pair
    outcome = []

    def write():
        try:
            a.write_frame(wire.ITEMS, b"x" * (4 << 20))
        except BrokenPipeError as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    a.cancel_writes()
    writer.join(TIMEOUT)
    assert not writer.is_alive()
    assert str(outcome[0]) == "[Errno 32] writes to this channel were cancelled"


def test_a_memo_index_of_a_billion_costs_no_memory_under_restriction():
    import tracemalloc

    # EMPTY_LIST, LONG_BINPUT 2**30, STOP: the C unpickler would size its memo to 2**31.
    bomb = b"\x80\x05]r" + (1 << 30).to_bytes(4, "little") + b"."
    tracemalloc.start()
    try:
        assert wire.restricted_loads(set())(bomb) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_registered_extension_code_is_still_checked_against_allowed():
    import copyreg

    copyreg.add_extension("os", "getcwd", 0x7ABC)
    try:
        payload = b"\x80\x02\x83" + (0x7ABC).to_bytes(2, "little") + b"."  # EXT2 0x7ABC
        assert pickle.loads(payload) is os.getcwd  # now cached by the stock unpicklers
        with pytest.raises(ProtocolError, match=r"^refused to unpickle global 'os\.getcwd'"):
            wire.restricted_loads(set())(payload)
    finally:
        copyreg.remove_extension("os", "getcwd", 0x7ABC)
