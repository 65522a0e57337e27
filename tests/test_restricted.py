# A keyed peer against the restricted unpickler and the frame reader: one attack per opcode
# family (GLOBAL, STACK_GLOBAL, INST, OBJ, NEWOBJ, NEWOBJ_EX, REDUCE, BUILD, APPEND/SETITEM,
# EXT, persistent ids), each a pickle that the stock pure-Python unpickler behind a plain
# find_class check loads, and the memory bound per frame (a pickle of empty dicts, a frame
# announcing a million out-of-band buffers). Every pickle is assembled here, opcode by opcode.

import copyreg
import fractions
import io
import os
import pickle
import struct

import pytest

from gilstudy import wire
from gilstudy.errors import ProtocolError

pytestmark = pytest.mark.timeout(60)


def text(value: str) -> bytes:
    """Push ``value``: a protocol-0 UNICODE opcode (the pure-Python unpickler takes any
    opcode at any protocol)."""
    return b"V" + value.encode("raw_unicode_escape") + b"\n"


def global_(module: str, name: str) -> bytes:
    """Push a global with GLOBAL, under protocol 4 (where the stock unpickler walks a dotted
    name)."""
    return b"\x80\x04c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_global(module: str, name: str) -> bytes:
    return b"\x80\x04" + text(module) + text(name) + b"\x93"


# A walk from an allowed module to builtins.eval through module attributes (the issue's).
WALK = ("fractions", "re.enum.bltns.eval")


def module_is_fractions(module, name):
    return module == "fractions"


def old_loads(data: bytes, allowed) -> object:
    """What restricted loading was before this issue: the stock unpickler behind a
    find_class that asks ``allowed`` (module, name) and then walks the dotted name."""
    check = wire.permits(allowed)

    class Old(pickle._Unpickler):
        def find_class(self, module, name):
            if not check(module, name):
                raise ProtocolError("refused")
            return super().find_class(module, name)

    return Old(io.BytesIO(data)).load()


def new_loads(data: bytes, allowed) -> object:
    return wire.restricted_loads(allowed)(data)


def eval_writing(path) -> bytes:
    """Arguments for eval that write ``path``: what the attacker's code does."""
    return text(f"__import__('pathlib').Path({str(path)!r}).write_text('ran')") + b"\x85"   # TUPLE1


def attack_cases(path):
    """(name, pickle, allowed) for each resolving or calling opcode family: each makes
    code run (writes ``path``) or calls a class allowed does not name."""
    str_class = (global_("builtins", "type") + b"(" + text("x") + b"tR"   # type("x") -> str
                 + b"p0\n")                                           # memo 0 = str
    only_type = {"builtins.type"}
    return [
        ("GLOBAL", global_(*WALK) + eval_writing(path) + b"R.", module_is_fractions),
        ("STACK_GLOBAL", stack_global(*WALK) + eval_writing(path) + b"R.",
         module_is_fractions),
        ("INST", b"\x80\x04(" + text(f"__import__('pathlib').Path({str(path)!r}).write_text('ran')") + b"i"
         + "\n".join(WALK).encode() + b"\n.", module_is_fractions),
        ("REDUCE", str_class + b"(" + text("called") + b"tR.", only_type),
        ("OBJ", str_class + b"0(g0\n" + text("called") + b"o.", only_type),
        ("NEWOBJ", str_class + b"(" + text("called") + b"t\x81.", only_type),
        ("NEWOBJ_EX", str_class + b"(" + text("called") + b"t}\x92.", only_type),
    ]


@pytest.mark.parametrize("index", range(7), ids=["GLOBAL", "STACK_GLOBAL", "INST", "REDUCE",
                                                 "OBJ", "NEWOBJ", "NEWOBJ_EX"])
def test_an_attack_that_the_old_unpickler_let_through_is_refused(tmp_path, index):
    path = tmp_path / "ran"
    name, data, allowed = attack_cases(path)[index]
    # Without the rule the attack works: code ran, or a class allowed does not name was
    # called ("called" is a str made by calling str).
    loaded = old_loads(data, allowed)
    assert path.exists() or loaded == "called", name
    if path.exists():
        path.unlink()
    with pytest.raises(ProtocolError, match=r"refused to unpickle"):
        new_loads(data, allowed)
    assert not path.exists()


def test_a_dotted_name_a_set_names_resolves_and_one_it_does_not_is_refused():
    data = global_("fractions", "Fraction.from_float") + b"(G?\xe0\x00\x00\x00\x00\x00\x00tR."
    assert new_loads(data, {"fractions.Fraction.from_float"}) == fractions.Fraction(1, 2)
    with pytest.raises(ProtocolError, match=r"'fractions\.Fraction\.from_float': it is not"):
        new_loads(data, {"fractions.Fraction"})


def test_a_callable_allowed_gets_the_full_dotted_name():
    seen = []

    def allowed(module, name):
        seen.append((module, name))
        return True

    data = global_("fractions", "Fraction.from_float") + b"(G?\xe0\x00\x00\x00\x00\x00\x00tR."
    assert new_loads(data, allowed) == fractions.Fraction(1, 2)
    assert seen == [("fractions", "Fraction.from_float")]
    # ...and a walk through a module is refused even when the callable says yes.
    with pytest.raises(ProtocolError, match=r"walks through 'fractions\.re'"):
        new_loads(global_(*WALK) + b".", allowed)


class Victim:
    """A class whose state an attack tries to change."""
    flag = "intact"


REGISTRY = {"kept": 1}


def test_build_on_a_class_is_refused():
    # The attack (a): BUILD with slot state for the class itself sets a class
    # attribute in the receiving process.
    module, name = Victim.__module__, Victim.__qualname__
    data = (global_(module, name) + b"N}" + text("flag") + text("changed") + b"s\x86b.")
    allowed = {f"{module}.{name}"}
    try:
        old_loads(data, allowed)
        assert Victim.flag == "changed"
    finally:
        Victim.flag = "intact"
    with pytest.raises(ProtocolError, match=r"BUILD would change type"):
        new_loads(data, allowed)
    assert Victim.flag == "intact"


def test_build_on_an_instance_still_works():
    value = new_loads(pickle.dumps(fractions.Fraction(2, 3), 0), {"fractions.Fraction"})
    assert value == fractions.Fraction(2, 3)


@pytest.mark.parametrize("opcodes", [b"(" + text("extra") + text("x") + b"u",   # SETITEMS
                                     text("extra") + text("x") + b"s"])        # SETITEM
def test_setitem_on_a_global_dict_is_refused(opcodes):
    module = Victim.__module__
    data = global_(module, "REGISTRY") + opcodes + b"."
    allowed = {f"{module}.REGISTRY"}
    try:
        old_loads(data, allowed)
        assert "extra" in REGISTRY
    finally:
        REGISTRY.pop("extra", None)
    with pytest.raises(ProtocolError, match=r"SETITEMS? would change dict"):
        new_loads(data, allowed)
    assert REGISTRY == {"kept": 1}


def test_a_module_dict_reached_by_a_callable_cannot_be_changed():
    # With ``module == "fractions"`` the name "__dict__" is the module's globals.
    data = global_("fractions", "__dict__") + text("Fraction") + b"Ns."
    with pytest.raises(ProtocolError, match=r"SETITEM would change dict"):
        new_loads(data, module_is_fractions)
    assert isinstance(fractions.Fraction, type)


def test_an_extension_code_resolves_through_allowed(tmp_path):
    path = tmp_path / "ran"
    copyreg.add_extension(*WALK, 0x7A)
    try:
        data = b"\x80\x04\x82\x7a" + eval_writing(path) + b"R."
        old_loads(data, module_is_fractions)
        assert path.exists()
        path.unlink()
        with pytest.raises(ProtocolError, match=r"walks through"):
            new_loads(data, module_is_fractions)
        assert not path.exists()
    finally:
        copyreg.remove_extension(*WALK, 0x7A)


@pytest.mark.parametrize("data", [b"Pfoo\n.", text("pid") + b"Q."], ids=["PERSID", "BINPERSID"])
def test_a_persistent_id_is_refused_without_a_loader(data):
    with pytest.raises((ProtocolError, pickle.UnpicklingError), match="persistent"):
        new_loads(data, set())


def test_a_persistent_id_goes_only_to_the_loader_given():
    asked = []
    unpickler = wire.RestrictedUnpickler(io.BytesIO(text("pid") + b"Q."), allowed=set())
    unpickler.persistent_load = lambda pid: asked.append(pid) or "loaded"
    assert unpickler.load() == "loaded" and asked == ["pid"]


# -- Memory per frame -----------------------------------------------------------------------

def test_a_pickle_of_empty_dicts_stops_at_its_budget():
    # The attack: each 1-byte EMPTY_DICT made 73 bytes of memory.
    count = 4 << 20
    data = b"\x80\x05" + b"}" * count + b"."
    stream = io.BytesIO(data)
    budget = wire.budget_for(len(data))
    unpickler = wire.RestrictedUnpickler(stream, allowed=set(), budget=budget)
    with pytest.raises(ProtocolError, match=r"more than \d+ bytes of objects"):
        unpickler.load()
    # Refused while reading, well before the end, having counted no more than the budget
    # plus one opcode's worth.
    assert stream.tell() < len(data) and unpickler._spent <= budget + 1024
    assert budget == wire.AMPLIFICATION * len(data)


@pytest.mark.parametrize("opcode", [b"}", b"]", b"(", b"\x94", b"N\x85"],
                         ids=["EMPTY_DICT", "EMPTY_LIST", "MARK", "MEMOIZE", "TUPLE1"])
def test_every_cheap_opcode_is_counted(opcode):
    data = b"\x80\x05N" + opcode * (3 << 20)
    with pytest.raises(ProtocolError, match=r"bytes of objects"):
        wire.RestrictedUnpickler(io.BytesIO(data), allowed=set(),
                                 budget=wire.budget_for(len(data))).load()


def test_ordinary_batches_load_within_their_budget():
    np = pytest.importorskip("numpy")
    items = [{"a": index, "b": [1.5, "text"]} for index in range(4096)]
    assert new_loads(pickle.dumps(items, 5), set()) == items
    arrays = [np.arange(1 << 16, dtype=np.uint8)] * 3
    payload, buffers = wire.dumps(arrays)
    loaded = wire.restricted_loads(wire.NUMPY_ARRAYS)(payload, buffers=buffers)
    assert all((array == arrays[0]).all() for array in loaded)


def _oob_frame(sizes, body=b"") -> bytes:
    table = struct.pack(f"!I{len(sizes)}Q", len(sizes), *sizes)
    length = len(table) + len(body) + sum(sizes)
    return wire.HEADER.pack(wire.ITEMS_OOB, length) + table + body


@pytest.fixture
def reader():
    read_fd, write_fd = os.pipe()
    channel = wire.Channel.from_fds(read_fd, os.open(os.devnull, os.O_WRONLY))
    yield channel, write_fd
    channel.close()
    os.close(write_fd)


def test_a_frame_announcing_a_million_buffers_is_refused_before_its_table(reader):
    channel, write_fd = reader
    # The attack: 2**20 zero-size buffers (8 MiB of table) made 402 MiB.
    header = wire.HEADER.pack(wire.ITEMS_OOB, 4 + 8 * (1 << 20)) + struct.pack("!I", 1 << 20)
    os.write(write_fd, header)
    with pytest.raises(ProtocolError, match=r"1048576 out-of-band buffers, more than the 4096"):
        channel.read_frame()


def test_a_zero_size_buffer_is_refused(reader):
    channel, write_fd = reader
    os.write(write_fd, _oob_frame([0, 0], b"x"))
    with pytest.raises(ProtocolError, match=r"buffer of 0 bytes"):
        channel.read_frame()


def test_a_sender_splits_a_batch_with_more_buffers_than_a_frame_carries(monkeypatch):
    np = pytest.importorskip("numpy")
    import gilstudy.wire.pickling
    monkeypatch.setattr(gilstudy.wire.pickling, "MAX_BUFFERS", 2)
    arrays = [np.zeros(wire.OUT_OF_BAND_MIN, np.uint8) for _ in range(3)]
    frames = wire.dumps_in_frames(arrays, 1 << 40)
    assert [len(buffers) for _, buffers in frames] == [1, 2]
    with pytest.raises(ProtocolError, match=r"3 out-of-band buffers, more than the 2"):
        wire.dumps_in_frames([arrays], 1 << 40)
