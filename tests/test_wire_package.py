# gilstudy.wire as a package (issue 22, item 3): every name the one-module wire exported is
# still there, each part is a small module with a docstring, and no module reaches into
# wire's private names (the MPI channel and the plain stream use its public ones).

import ast
import pathlib

import pytest

import gilstudy
from gilstudy import wire

pytestmark = pytest.mark.one_pass

PACKAGE = pathlib.Path(gilstudy.__file__).parent

# What `from gilstudy.wire import *` gave when wire was one module.
ONE_MODULE_NAMES = [
    "HEADER", "VERSION", "MAGIC", "PICKLE_PROTOCOL", "KIND_NAMES",
    "HELLO", "NONCE", "PROOF", "SETUP", "ITEMS", "CLOSE", "ACK", "RESULTS", "ERROR", "DONE",
    "ITEMS_OOB", "RESULTS_OOB",
    "WANT_RESULTS", "AUTHENTICATE", "HELLO_BODY", "ACK_BODY", "NONCE_SIZE", "PROOF_SIZE",
    "FLUSH_INTERVAL", "MAX_FRAME", "OUT_OF_BAND_MIN", "NUMPY_ARRAYS",
    "Channel", "Hello", "OutOfBand", "RestrictedUnpickler", "restricted_loads", "channel_options",
    "dumps", "frame_size", "dumps_in_frames", "send_hello", "read_hello", "handshake",
    "proof", "encode_error", "decode_error",
]


def test_every_name_of_the_one_module_wire_is_still_exported():
    assert set(ONE_MODULE_NAMES) <= set(wire.__all__)
    for name in wire.__all__:
        assert getattr(wire, name) is not None, name


@pytest.mark.parametrize("path", sorted((PACKAGE / "wire").glob("*.py")), ids=lambda p: p.name)
def test_each_part_is_a_small_module_with_a_docstring(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    assert len(path.read_text().splitlines()) <= 600


def test_no_module_uses_a_private_name_of_wire():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "wire" and path.parent.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                    and node.value.id == "wire"):
                offenders.append(f"{path.name}: wire.{node.attr}")
            if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gilstudy.wire")
                    and any(alias.name.startswith("_") for alias in node.names)):
                offenders.append(f"{path.name}: from {node.module} import _...")
    assert offenders == []


def test_the_mpi_channel_shares_the_frame_channel_base():
    source = (PACKAGE / "mpi" / "channel.py").read_text()
    assert "class MpiChannel(wire.FrameChannel)" in source
    assert issubclass(wire.Channel, wire.FrameChannel)
