# Large numpy arrays through shared memory (gilstudy.shared): data identical on arrival and on
# the way back for every dtype and memory layout, shared_array() passing only a handle, the
# stream kept for a server's connection, errors raised by the send() that sent the item, and
# nothing left behind (descriptors, mappings, /dev/shm, memory) after close, an error, a
# SIGKILL of either end mid-transfer, or Ctrl-C.

import ctypes
import gc
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import _coprocess_consumers as cc
from gilstudy import Collect, connect, serve, shared, shared_array, spawn, wire
from gilstudy.errors import CoprocessDied, ProtocolError
from gilstudy.remote import EXIT_TIMEOUT
from gilstudy.shared import SHARED_MIN, SharedMemory, is_shared, side_pair

# Only reached when something deadlocks.
TIMEOUT = 60
HERE = os.path.dirname(os.path.abspath(__file__))
TRANSPORTS = ["pipe", "fifo", "socket"]
MIB = 1 << 20
SEGMENT = "memfd:gilstudy-array"

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")

DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "g", "c8",
          "c16", "G", "M8[ns]", "m8[s]", "S7", "U3", "V5", ">i4", ">f8",
          np.dtype([("a", "<i4"), ("b", ">f8"), ("c", "S3")]),
          np.dtype([("a", "u1"), ("b", "f8")], align=True),
          np.dtype([("m", "f4", (2, 3)), ("n", "i2")])]


def filled(dtype, count: int | None = None):
    """An array of ``dtype`` just over SHARED_MIN bytes, of random bytes (booleans: 0 or 1)."""
    dtype = np.dtype(dtype)
    if count is None:
        count = SHARED_MIN // dtype.itemsize + 17
    rng = np.random.default_rng(len(str(dtype)))
    if dtype == np.dtype("?"):
        return rng.integers(0, 2, count).astype("?")
    raw = rng.integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype)


def digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def over_mapping(array) -> bool:
    """Whether ``array`` lies over a mapping of shared memory: gilstudy.shared maps segments
    as ctypes arrays, at the end of an array's bases."""
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, ctypes.Array)


def segments(pid="self") -> list:
    """The shared-memory segments a process holds: descriptors and mappings of them."""
    held = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        if SEGMENT in target:
            held.append(target)
    with open(f"/proc/{pid}/maps") as maps:
        held.extend(line.strip() for line in maps if SEGMENT in line)
    return held


def settled() -> list:
    gc.collect()
    return segments()


def echo_all(arrays: list, transport: str) -> list:
    results = Collect()
    with spawn(cc.ArrayEcho, transport=transport, results=results) as echo:
        for array in arrays:
            echo.send(array)
    assert len(results.items) == len(arrays)
    return results.items


def check_echo(original, answer) -> None:
    back, seen, mapped, writable = answer
    assert seen == digest(original), f"{original.dtype} {original.shape} changed on the way"
    assert mapped and writable, f"{original.dtype} did not arrive over shared memory"
    assert back.dtype == original.dtype and back.shape == original.shape
    assert digest(back) == seen, f"{original.dtype} changed on the way back"
    assert over_mapping(back), "the result did not come back through shared memory"


# --- Data identical on arrival, both ways -----------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_dtype_arrives_identical_through_shared_memory_and_comes_back(transport):
    arrays = [filled(dtype) for dtype in DTYPES]
    answers = echo_all(arrays, transport)
    for original, answer in zip(arrays, answers):
        check_echo(original, answer)
    assert settled() != []   # the answers lie over the child's segments...
    del answers, answer
    assert settled() == []   # ...until they are gone


@pytest.mark.timeout(TIMEOUT)
def test_every_memory_layout_arrives_identical_and_fortran_order_stays_fortran():
    block = filled("f8", 512 * 600).reshape(512, 600)
    record = filled(DTYPES[23], 4 * 128 * 1024).reshape(4, 128, 1024)
    layouts = {
        "C": block, "F": np.asfortranarray(block), "every other column": block[:, ::2],
        "reversed": block[::-1], "transposed": block.T, "reversed columns": block[:, ::-1],
        "strided 3-D records": record[:, ::2, 1::3], "Fortran records": np.asfortranarray(record),
    }
    answers = echo_all(list(layouts.values()), "pipe")
    for (name, original), answer in zip(layouts.items(), answers):
        check_echo(original, answer)
        if original.flags.f_contiguous and not original.flags.c_contiguous:
            assert answer[0].flags.f_contiguous, name


@pytest.mark.timeout(TIMEOUT)
def test_zero_size_small_and_object_arrays_travel_in_the_stream_as_before():
    objects = np.array([index for index in range(SHARED_MIN // 8)], dtype=object)
    arrays = [np.empty((0,), "f8"), np.empty((0, 5), "i4", order="F"), np.arange(100),
              objects]
    results = Collect()
    with spawn(cc.Echo, results=results) as echo:
        for array in arrays:
            echo.send(array)
    for original, back in zip(arrays, results.items):
        assert back.dtype == original.dtype and back.shape == original.shape
        assert (back == original).all()
        assert not over_mapping(back)


@pytest.mark.timeout(TIMEOUT)
def test_an_array_over_the_frame_limit_reaches_an_own_child_with_default_settings():
    array = np.arange((wire.MAX_FRAME + MIB) // 8, dtype="i8")
    results = Collect()
    with spawn(cc.ArrayEcho, results=results) as echo:
        echo.send(array)
    check_echo(array, results.items[0])


@pytest.mark.timeout(TIMEOUT)
def test_restricted_results_load_arrays_that_come_back_through_shared_memory():
    array = filled("f8")
    results = Collect()
    with spawn(cc.Echo, results=results, allowed=wire.NUMPY_ARRAYS) as echo:
        echo.send(array)
    assert digest(results.items[0]) == digest(array) and over_mapping(results.items[0])


# --- shared_array: only a handle crosses ------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_shared_array_and_its_views_cross_without_a_copy(transport):
    array = shared_array((1024, 1024), np.float64)
    assert is_shared(array) and is_shared(array[::2, 1:]) and not is_shared(array.copy())
    results = Collect()
    with spawn(cc.Fill, 5.0, transport=transport, results=results) as fill:
        fill.send(array[::2])       # the consumer writes into the very same memory
        fill.send(array[1::2, :300].T)
    assert results.items == [array.nbytes // 2, 512 * 300 * 8]
    assert (array[::2] == 5).all() and (array[1::2, :300] == 5).all()
    assert (array[1::2, 300:] == 0).all()


def test_shared_array_refuses_bad_arguments_naming_them():
    with pytest.raises(TypeError, match=r"^shared_array: dtype must not hold Python objects, "
                                        r"got object$"):
        shared_array(10, object)
    with pytest.raises(ValueError, match=r"^shared_array: order must be 'C' or 'F', got 'K'$"):
        shared_array(10, order="K")
    with pytest.raises(ValueError, match=r"^shared_array: shape must be >= 0, got -1$"):
        shared_array((3, -1))
    with pytest.raises(TypeError, match=r"^shared_array: shape must be an int, got float"):
        shared_array(2.5)
    empty = shared_array((0, 4), "i2", order="F")
    assert empty.shape == (0, 4) and empty.flags.f_contiguous and not empty.any()


# --- The handles themselves -------------------------------------------------------------------

def exchange():
    near, far = side_pair()
    return SharedMemory(near), SharedMemory(far)


def load_with(receiver: SharedMemory, payload: bytes):
    unpickler = pickle.Unpickler(__import__("io").BytesIO(payload))
    unpickler.persistent_load = receiver.attach
    try:
        return unpickler.load()
    finally:
        receiver.loaded()


def test_a_handle_carries_an_array_and_the_same_array_twice_is_copied_once():
    sender, receiver = exchange()
    try:
        array = filled("i4")
        payload, buffers = wire.dumps([array, array, 3], sender)
        sender.end_dump()
        assert not buffers and len(payload) < 1024 and sender.moved == array.nbytes
        first, second, three = load_with(receiver, payload)
        assert digest(first) == digest(second) == digest(array) and three == 3
        # The sender's pooled segment (its descriptor and mapping); the receiver's mapping.
        assert len(settled()) == 3
    finally:
        sender.close()
        receiver.close()
    del first, second
    assert settled() == []


@pytest.mark.parametrize("handle, message", [
    (("gilstudy.shared", 0, True, 4096, (8,), np.dtype(object), (8,)), "only plain data"),
    (("gilstudy.shared", 0, True, 4096, (1 << 40,), np.dtype("u1"), (1,)), "does not fit"),
    (("elsewhere", 0), "unknown persistent id"),
])
def test_a_handle_that_names_the_wrong_thing_is_a_protocol_error(handle, message):
    sender, receiver = exchange()
    try:
        segment = shared_array(100, "u1")
        sender._pass(segment.base.fd)
        with pytest.raises(ProtocolError, match=message):
            receiver.attach(handle)
    finally:
        sender.close()
        receiver.close()


def test_a_handle_whose_descriptor_never_came_is_a_protocol_error(monkeypatch):
    monkeypatch.setattr(shared, "_FD_TIMEOUT", 0.05)
    sender, receiver = exchange()
    try:
        with pytest.raises(ProtocolError, match="did not come within"):
            receiver.attach(("gilstudy.shared", 0, True, 4096, (8,), np.dtype("u1"), (1,)))
    finally:
        sender.close()
        receiver.close()


# --- A server's connection keeps the stream; errors at once -----------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_an_array_too_large_for_a_server_raises_from_the_send_that_sent_it():
    key = os.urandom(16)
    with serve(("127.0.0.1", 0), cc.Echo, authkey=key, max_frame=MIB) as server:
        results = Collect()
        worker = connect(server.address, results, authkey=key)
        try:
            worker.send(filled("u1", MIB // 2))
            worker.flush()
            results.wait(1, timeout=TIMEOUT)
            assert not over_mapping(results.items[0])   # the stream, not shared memory
            time.sleep(0.02)
            with pytest.raises(ProtocolError, match=r"^item number 1 .* pickles to more than "
                                                    r"the 1048576 bytes"):
                worker.send(filled("u1", 2 * MIB))
        finally:
            worker.abort()


@pytest.mark.timeout(TIMEOUT)
def test_an_item_that_fails_to_pickle_raises_from_the_send_that_sent_it():
    worker = spawn(cc.Echo)
    try:
        time.sleep(0.02)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)) as info:
            worker.send(lambda: "not picklable")
        assert "item number 0" in " ".join(info.value.__notes__)
    finally:
        worker.abort()


# --- Nothing leaks ----------------------------------------------------------------------------

def descriptors() -> set:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nothing_is_left_after_close_an_error_or_abort(transport):
    before = descriptors()
    arrays = [filled("f8"), filled("u1", 3 * MIB)]
    results = Collect()
    with spawn(cc.ArrayEcho, transport=transport, results=results) as echo:
        for array in arrays:
            echo.send(array)
    failing = spawn(cc.FailOn, 1, transport=transport)
    failing.send(arrays[0])
    failing.send(1)
    with pytest.raises(Exception):
        failing.close()
    aborted = spawn(cc.Keep, transport=transport)
    for array in arrays * 4:
        aborted.send(array)
    aborted.abort()
    del results
    assert settled() == []
    assert descriptors() == before


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_killing_the_child_mid_transfer_leaves_no_segment(transport):
    before = descriptors()
    arrays = [filled("u1", 4 * MIB + index) for index in range(4)]
    worker = spawn(cc.Keep, transport=transport)
    threading.Timer(0.2, os.kill, (worker.pid, signal.SIGKILL)).start()
    deadline = time.monotonic() + EXIT_TIMEOUT + 10
    with pytest.raises(CoprocessDied):
        while time.monotonic() < deadline:
            for array in arrays:
                worker.send(array)
        worker.close()
    worker.abort()
    assert settled() == []
    assert descriptors() == before


_PARENT = textwrap.dedent("""
    import sys
    import numpy as np
    from gilstudy import spawn
    import _coprocess_consumers as cc
    worker = spawn(cc.Keep, transport=sys.argv[1])
    print(worker.pid, flush=True)
    arrays = [np.full(16 << 20, index, np.uint8) for index in range(4)]
    with worker:
        while True:
            for array in arrays:
                worker.send(array)
""")


def shmem_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie counts: it holds no memory or files)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ending_the_parent_mid_transfer_frees_every_segment(transport, how):
    # The consumer keeps every array: the segments pile up until the parent is ended. Then
    # the child sees its channel close and exits, and the kernel frees them all: memory
    # (Shmem) falls back, /dev/shm never held any of it. Others share this machine's Shmem,
    # so the bounds leave room for them.
    shm_before = set(os.listdir("/dev/shm"))  # others' files come and go there too
    baseline = shmem_bytes()
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, transport], cwd=HERE,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": HERE})
    try:
        child = int(parent.stdout.readline())
        # The parent copies ahead of a child that is still starting: wait until the child
        # itself maps arrays too.
        deadline = time.monotonic() + TIMEOUT / 2
        while (not segments(child) or shmem_bytes() < baseline + 256 * MIB) and (
                time.monotonic() < deadline):
            time.sleep(0.01)
        assert segments(child), "the child never mapped an array"
        assert shmem_bytes() >= baseline + 256 * MIB, "the arrays never piled up"
        parent.send_signal(how)
        parent.wait(TIMEOUT)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + EXIT_TIMEOUT + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(child), "the child outlived its parent"
    while shmem_bytes() > baseline + 128 * MIB and time.monotonic() < deadline:
        time.sleep(0.01)
    assert shmem_bytes() <= baseline + 128 * MIB, "shared memory outlived both ends"
    assert not {name for name in os.listdir("/dev/shm") if "gilstudy" in name} - shm_before


# --- A producer faster than its consumer ------------------------------------------------------

def test_the_window_of_arrays_in_flight_asks_for_the_frames_beyond_its_limit():
    window = shared.InFlight(limit=10)
    assert window.awaits(0) is None
    window.add(1, 6)
    assert window.awaits(0) is None      # 6 of 10 bytes in flight: room
    window.add(3, 6)
    assert window.awaits(0) == 1         # 12: the first frame must be acknowledged
    assert window.awaits(1) is None and window.bytes == 6
    window.add(4, 20)
    assert window.awaits(3) == 4 and window.awaits(4) is None and window.bytes == 0


@pytest.mark.timeout(TIMEOUT)
def test_a_fast_producer_waits_while_the_arrays_in_flight_fill_the_window(monkeypatch):
    monkeypatch.setattr(shared, "SHARED_IN_FLIGHT", 4 * MIB)
    arrays = [filled("u1", 2 * MIB) for _ in range(8)]
    results = Collect()
    most = 0
    with spawn(cc.Sleepy, 0.05, results=results) as slow:
        for array in arrays:
            slow.send(array)
            most = max(most, slow.pending)
    # Two frames of 2 MiB fill the 4 MiB window; the third waits until the first is
    # acknowledged, so at most three arrays are ever unacknowledged.
    assert most <= 3
    assert len(results.items) == len(arrays) + 1   # and "closed"
