# The receiving end of a channel under random and mutated input: whatever the bytes, reading
# frames raises only ProtocolError or EOFError (a clean close), a consumer run on them returns
# or raises ProtocolError, nothing outside the allowed globals is ever loaded, and memory stays
# within a few frame limits. The input is an in-memory stream; replies go to /dev/null.

import io
import os
import pickle
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gilstudy import wire
from gilstudy.farside import run_far_side as run_consumer
from gilstudy.errors import ProtocolError

pytestmark = pytest.mark.one_pass

MAX_FRAME = 1 << 20
# Reading holds at most one frame and what its pickle builds; allow twice that, twice over.
MEMORY_BOUND = 4 * MAX_FRAME

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def channel_over(data: bytes, allowed=frozenset()) -> wire.Channel:
    """A channel that reads ``data`` then EOF, writes to /dev/null and loads only
    ``allowed`` globals."""
    reader = io.BufferedReader(io.BytesIO(data), buffer_size=1 << 16)
    return wire.Channel(reader, os.open(os.devnull, os.O_WRONLY), max_frame=MAX_FRAME,
                        allowed=allowed)


def encode(frames) -> bytes:
    """The bytes a Channel writes for ``frames``: ``(kind, items)`` pairs, items pickled
    for ITEMS, sent as they are otherwise."""
    fd = os.memfd_create("frames")
    channel = wire.Channel(open(os.dup(fd), "rb"), fd)
    for kind, items in frames:
        if kind == wire.ITEMS:
            channel.write_frame(kind, *wire.dumps(items))
        else:
            channel.write_frame(kind, items)
    data = os.pread(fd, os.fstat(fd).st_size, 0)
    channel.close()
    return data


def read_everything(channel: wire.Channel) -> list:
    """Read and load frames until the channel ends or breaks; what was loaded."""
    loaded = []
    while True:
        try:
            kind, payload = channel.read_frame()
        except (EOFError, ProtocolError):
            return loaded
        if kind in (wire.ITEMS, wire.RESULTS, wire.SETUP, wire.ERROR):
            try:
                loaded.append(channel.load(payload))
            except ProtocolError:
                return loaded


def within_memory_bound(run):
    tracemalloc.start()
    try:
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND
    return result


# Items pickle builds without any global, and out-of-band buffers (a PickleBuffer travels out
# of band as itself), so that restricted unpickling with nothing allowed loads them all.
ITEM = st.one_of(
    st.integers(), st.text(max_size=20), st.binary(max_size=40), st.none(), st.floats(),
    st.tuples(st.integers(), st.text(max_size=5)),
    st.integers(wire.OUT_OF_BAND_MIN, wire.OUT_OF_BAND_MIN + 4096).map(
        lambda size: pickle.PickleBuffer(bytearray(size))),
)
FRAMES = st.lists(st.tuples(st.just(wire.ITEMS),
                            st.lists(ITEM, min_size=1, max_size=4)), min_size=1, max_size=4)


@st.composite
def mutated_streams(draw) -> bytes:
    """A valid stream of ITEMS frames, then one mutation: cut short, a byte changed, a
    length field set to a huge value, random bytes inserted, or a slice removed."""
    data = bytearray(encode(draw(FRAMES) + [(wire.CLOSE, b"")]))
    where = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["truncate", "flip", "huge-length", "insert", "delete"]))
    if how == "truncate":
        del data[where:]
    elif how == "flip":
        data[where] ^= draw(st.integers(1, 255))
    elif how == "huge-length":
        start = min(where, len(data) - 8)
        data[start:start + 8] = draw(st.integers(MAX_FRAME + 1, 2**64 - 1)).to_bytes(8, "big")
    elif how == "insert":
        data[where:where] = draw(st.binary(min_size=1, max_size=64))
    else:
        del data[where:where + draw(st.integers(1, 64))]
    return bytes(data)


class Received:
    """The consumer under fuzzing: keeps what it is sent."""

    def __init__(self):
        self.items = []

    def send(self, item):
        self.items.append(item)

    def close(self):
        return len(self.items)


def run_on(data: bytes, consumer: Received) -> str:
    """Run a consumer on ``data``; how it ended: "closed", "abandoned" or "protocol error"."""
    channel = channel_over(data)
    try:
        return "closed" if run_consumer(channel, lambda: consumer, True) else "abandoned"
    except ProtocolError:
        return "protocol error"
    finally:
        channel.close()


@pytest.mark.timeout(60)
@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_end_in_a_protocol_error_or_a_clean_close(data):
    channel = channel_over(data)
    try:
        within_memory_bound(lambda: read_everything(channel))
    finally:
        channel.close()


@pytest.mark.timeout(60)
@FUZZ
@given(st.sampled_from([wire.HELLO, wire.NONCE, wire.ITEMS, wire.ITEMS_OOB, wire.RESULTS_OOB]),
       st.integers(0, 2**64 - 1), st.binary(max_size=512))
def test_any_header_with_any_body_ends_in_a_protocol_error_or_a_clean_close(kind, length, body):
    channel = channel_over(wire.HEADER.pack(kind, length) + body)
    try:
        within_memory_bound(lambda: read_everything(channel))
    finally:
        channel.close()


@pytest.mark.timeout(60)
@FUZZ
@given(mutated_streams())
def test_a_consumer_fed_a_mutated_stream_closes_or_stops_at_a_protocol_error(data):
    consumer = Received()
    outcome = within_memory_bound(lambda: run_on(data, consumer))
    assert outcome in ("closed", "abandoned", "protocol error")


@pytest.mark.timeout(60)
@FUZZ
@given(FRAMES)
def test_valid_frames_arrive_whole_and_in_order(frames):
    consumer = Received()
    assert run_on(encode(frames + [(wire.CLOSE, b"")]), consumer) == "closed"
    expected = [item for _, items in frames for item in items]
    assert len(consumer.items) == len(expected)
    for got, sent in zip(consumer.items, expected):
        if isinstance(sent, pickle.PickleBuffer):
            assert bytes(got) == bytes(sent)
        else:
            assert got == sent or got != got  # NaN is not equal to itself


class Plant:
    """Unpickling this creates the directory ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.timeout(60)
@FUZZ
@given(before=FRAMES, refused=st.sampled_from(["plant", "os.system", "eval", "Popen"]),
       neighbours=st.lists(ITEM, max_size=3))
def test_a_frame_with_a_refused_global_is_reported_and_never_reaches_the_consumer(
        tmp_path_factory, before, refused, neighbours):
    import subprocess

    marker = str(tmp_path_factory.mktemp("fuzz") / "marker")
    dangerous = {"plant": Plant(marker), "os.system": os.system, "eval": eval,
                 "Popen": subprocess.Popen}[refused]
    frames = before + [(wire.ITEMS, [*neighbours, dangerous]), (wire.ITEMS, [1]),
                       (wire.CLOSE, b"")]
    consumer = Received()
    assert run_on(encode(frames), consumer) == "protocol error"
    assert len(consumer.items) == sum(len(items) for _, items in before)
    assert not os.path.exists(marker)
