# hashlib over large buffers in every execution model. CPython's hashlib releases the GIL while
# it hashes more than 2 KiB, so threads scale although the function is one line of Python;
# processes must first receive each buffer through a pipe, which costs more than hashing it.
#
#     cd examples && gilstudy compare --function hashing:sha256_hex \
#         --inputs hashing:make_inputs --workers 1,2

import hashlib

__all__ = ["sha256_hex", "make_inputs"]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, as hex."""
    return hashlib.sha256(data).hexdigest()


def make_inputs() -> list[tuple[bytes]]:
    """32 buffers of 4 MiB each, different and reproducible. A function, not a module-level
    list, so that worker processes importing this module do not build 128 MiB each."""
    block = hashlib.sha256(b"gilstudy").digest() * (4 * 1024 * 1024 // 32)
    return [(bytes([k]) + block[1:],) for k in range(32)]
