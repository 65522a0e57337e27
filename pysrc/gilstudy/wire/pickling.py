"""Pickling for frames: objects to ``(payload, buffers)`` pairs that fit the peer's frame
limit, large buffers out of band or through shared memory, and the ERROR frame's payload
(how a remote exception travels)."""

import io
import os
import pickle

from gilstudy.errors import ProtocolError
from gilstudy.wire.frames import MAX_BUFFERS, OUT_OF_BAND_MIN, PICKLE_PROTOCOL, frame_size

__all__ = ["dumps", "dumps_in_frames", "encode_error", "decode_error"]


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
    if size <= limit and len(buffers) <= MAX_BUFFERS:
        frames.append((payload, buffers))
        return
    if len(items) == 1:
        if len(buffers) > MAX_BUFFERS:
            message = (f"a {type(items[0]).__name__} pickles with {len(buffers)} out-of-band "
                       f"buffers, more than the {MAX_BUFFERS} a frame may carry; send its "
                       "arrays in separate items")
        else:
            message = (f"a {type(items[0]).__name__} pickles to a frame of {size} bytes, "
                       f"more than the {limit} bytes the peer accepts; raise max_frame on "
                       "both ends to send it")
        exc = ProtocolError(message)
        exc.index = first
        raise exc
    half = len(items) // 2
    _dump_into(items[:half], first, limit, frames, shared)
    _dump_into(items[half:], first + half, limit, frames, shared)


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


def decode_error(channel, payload: bytes) -> tuple[str, str, str]:
    """``(remote_type, message, remote_traceback)`` from the payload of an ERROR frame
    read from ``channel``."""
    try:
        remote_type, message, text = channel.load(payload)
    except Exception as exc:
        raise ProtocolError(f"unreadable ERROR frame: {exc}") from exc
    return str(remote_type), str(message), str(text)
