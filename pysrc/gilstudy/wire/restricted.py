"""Restricted unpickling: loading a pickle from a peer while resolving only the globals an
``allowed`` set or callable permits (see RestrictedUnpickler)."""

import collections.abc
import copyreg
import io
import pickle
import sys
import types

from gilstudy import _checks
from gilstudy.errors import ProtocolError

__all__ = ["NUMPY_ARRAYS", "AMPLIFICATION", "BUDGET_FLOOR", "Allowed", "RestrictedUnpickler",
           "permits", "budget_for", "restricted_loads", "channel_options"]

# The globals a numpy array or scalar needs when loaded with restricted unpickling, for
# numpy 1.x (numpy.core) and 2.x (numpy._core): ``allowed=NUMPY_ARRAYS | {...}``.
NUMPY_ARRAYS = frozenset({
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
})


class Allowed:
    """The checked form of an ``allowed=`` argument: called as ``(module, qualname)``, true
    for a global that may be resolved. ``names`` is the frozenset of ``"module.qualname"``
    strings when ``allowed`` was a set (exact names only), else None (a callable)."""

    __slots__ = ("names", "check")

    def __init__(self, names=None, check=None):
        self.names = names
        self.check = check

    def __call__(self, module: str, qualname: str) -> bool:
        if self.names is not None:
            return f"{module}.{qualname}" in self.names
        return bool(self.check(module, qualname))

    def __repr__(self) -> str:
        return f"Allowed({sorted(self.names) if self.names is not None else self.check!r})"


def permits(allowed) -> Allowed:
    """``allowed`` (a set of "module.qualname" strings, or a callable(module, qualname) ->
    bool) checked, as an Allowed; TypeError or ValueError for anything else."""
    if isinstance(allowed, Allowed):
        return allowed
    if callable(allowed):
        return Allowed(check=allowed)
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, collections.abc.Iterable):
        raise TypeError(f"allowed must be a set of 'module.name' strings or a callable("
                        f"module, name), got {allowed!r}")
    names = frozenset(allowed)
    for name in names:
        if not isinstance(name, str) or "." not in name.strip("."):
            raise ValueError(f"allowed: each global must be a 'module.name' string, got "
                             f"{name!r}")
    return Allowed(names=names)


# What a restricted load may hold, per byte of the pickle: the unpickler counts what each
# opcode makes (see RestrictedUnpickler._charge) and refuses a pickle whose count passes
# AMPLIFICATION times its length or BUDGET_FLOOR, whichever is larger. Python objects are
# large next to their pickles (an empty dict is 1 byte of pickle and 64 bytes of memory),
# so a pickle of millions of tiny containers is the costly one; gilstudy's own batches are
# about 64 KiB, far under the floor.
AMPLIFICATION = 8
BUDGET_FLOOR = 16 << 20

# What the count charges, in bytes, beside the size of each object made: its slot on the
# stack, a memo entry (dict slot and int key), a stack frame of MARK (a new list and its
# metastack slot), and one item added to a list, dict or set (its slot with the container's
# over-allocation; a list's slot is the stack slot the item leaves, so only the
# over-allocation is new).
_STACK_SLOT = 8
_MEMO_ENTRY = 136
_MARK = 72
_LIST_ITEM = 1
_DICT_ITEM = 48
_SET_ITEM = 48

# Objects that CPython shares instead of allocating, so loading one costs a reference.
_SHARED_SINGLETONS = (type(None), bool, type(Ellipsis), type(NotImplemented))

# What BUILD, APPEND(S), SETITEM(S) and ADDITEMS may never change: state that outlives
# the load (a class, a module, a function, a method).
_NOT_INSTANCES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                  types.MethodType, types.MethodWrapperType, types.WrapperDescriptorType,
                  types.MethodDescriptorType, types.ClassMethodDescriptorType,
                  types.GetSetDescriptorType, types.MemberDescriptorType, types.CodeType,
                  types.FrameType, types.CellType, staticmethod, classmethod, property)


def _size(obj) -> int:
    """What loading ``obj`` cost in memory: nothing for an object CPython shares."""
    kind = type(obj)
    if kind in _SHARED_SINGLETONS:
        return 0
    if kind is int:
        return 0 if -5 <= obj <= 256 else sys.getsizeof(obj)
    if kind is str or kind is bytes or kind is tuple:
        shared = not obj or (len(obj) == 1 and kind is not tuple
                             and (kind is bytes or obj < "\u0100"))
        return 0 if shared else sys.getsizeof(obj)
    try:
        size = sys.getsizeof(obj)
    except TypeError:
        return 64
    state = getattr(obj, "__dict__", None)
    if type(state) is dict:
        size += sys.getsizeof(state)
    return size


def _refuse(what: str) -> ProtocolError:
    return ProtocolError(f"refused to unpickle: {what}")


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler for pickles from a peer that holds the key but not our trust: it
    resolves only the globals ``allowed`` names, calls only those, changes only objects
    made during this load, and stops once the load would hold more memory than its budget.
    Whatever it refuses raises ProtocolError naming it.

    ``allowed`` is a set of ``"module.qualname"`` strings (``{"fractions.Fraction"}``) or a
    callable ``(module, qualname) -> bool``. A set is matched exactly: a dotted name
    (``"fractions.Fraction.from_float"``) resolves only when the set names that full path.
    A callable gets the full dotted ``qualname`` as the pickle names it
    (``"re.enum.bltns.eval"`` after module ``"fractions"`` is a walk from ``fractions``
    to ``builtins.eval``), so it must judge the whole name, not the module alone; as a
    second guard, a dotted name it permits may walk only through classes, never through
    a module or a function. Either way a refused module is never imported.

    The rules, opcode by opcode:

    - GLOBAL, STACK_GLOBAL, INST and the EXT1/2/4 extension codes resolve through
      find_class(), hence ``allowed``.
    - REDUCE, NEWOBJ, NEWOBJ_EX, OBJ and INST call only an object that find_class()
      resolved in this load, never one that a call returned (``type(x)`` gives a class
      that ``allowed`` may not name).
    - BUILD (``__setstate__`` or the default state update), APPEND(S), SETITEM(S) and
      ADDITEMS change only an object made during this load: never a resolved global,
      and never a class, module, function or method, wherever it came from.
    - Persistent ids load only through ``persistent_load``, which refuses them unless
      the caller gave one (Channel.load gives the shared-memory one, which checks its
      handles).

    Values pickle builds without a global load whatever ``allowed`` says: None, bools,
    ints, floats, str, bytes, bytearray, tuples, lists, dicts, sets and frozensets.
    Everything pickled by reference needs an entry, builtins such as ``builtins.complex``
    included; numpy arrays need NUMPY_ARRAYS.

    Memory: with ``budget`` (bytes), the unpickler counts what each opcode makes (the
    object's size, a memo entry, a container slot) as it goes and raises ProtocolError as
    soon as the count passes the budget, so a pickle of millions of empty dicts stops
    early. restricted_loads() gives each pickle of B bytes max(AMPLIFICATION * B,
    BUDGET_FLOOR). What an allowed callable allocates on its own is not counted.

    It is the pure-Python unpickler, about 15 times slower per item than the C one, on
    purpose: the C unpickler sizes its memo by the index a PUT opcode names, so a pickle of
    30 bytes can make it allocate and clear gigabytes; here the memo is a dict. (Out-of-band
    buffers are not parsed: arrays keep their speed.)
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, *, allowed, buffers=None, budget: int | None = None):
        super().__init__(file, buffers=buffers, fix_imports=False)
        self._allowed = permits(allowed)
        # What find_class() resolved, by id (the objects are kept, so ids stay theirs).
        self._resolved: dict[int, object] = {}
        self._budget = budget
        self._spent = 0

    # Resolving -------------------------------------------------------------------------

    def find_class(self, module: str, name: str):
        if type(module) is not str or type(name) is not str:
            raise _refuse(f"a global named by {type(module).__name__} and "
                          f"{type(name).__name__}, not two strings")
        allowed = self._allowed
        if not allowed(module, name):
            raise ProtocolError(f"refused to unpickle global '{module}.{name}': it is not "
                                "in allowed")
        sys.audit("pickle.find_class", module, name)
        __import__(module, level=0)
        obj = sys.modules[module]
        parts = name.split(".")
        for index, part in enumerate(parts):
            if part == "<locals>" or not part:
                raise _refuse(f"global '{module}.{name}' is not a module-level name")
            if index and allowed.names is None and not isinstance(obj, type):
                walked = ".".join(parts[:index])
                raise _refuse(f"global '{module}.{name}' walks through '{module}.{walked}', "
                              "which is not a class; a dotted name that a callable allowed "
                              "permits may walk only through classes")
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ProtocolError(f"global '{module}.{name}' does not exist here") from None
        self._resolved[id(obj)] = obj
        return obj

    def get_extension(self, code: int) -> None:
        # The stock one returns a global it has loaded before without asking find_class.
        key = copyreg._inverted_registry.get(code)
        if key is None:
            raise ProtocolError(f"unregistered pickle extension code {code}")
        self.append(self.find_class(*key))

    def _named(self, func, opcode: str):
        """``func``, if find_class() resolved it in this load; else ProtocolError."""
        if self._resolved.get(id(func)) is not func:
            raise _refuse(f"{opcode} would call {type(func).__name__} {func!r:.60}, which "
                          "is not a global that allowed names")
        return func

    def _changeable(self, obj, opcode: str):
        """``obj``, if it was made during this load and is an instance; else ProtocolError."""
        if self._resolved.get(id(obj)) is obj or isinstance(obj, _NOT_INSTANCES):
            raise _refuse(f"{opcode} would change {type(obj).__name__} {obj!r:.60}, which "
                          "is not an instance made by this pickle")
        return obj

    # Counting -------------------------------------------------------------------------

    def _charge(self, cost: int) -> None:
        self._spent += cost
        if self._budget is not None and self._spent > self._budget:
            raise ProtocolError(f"the pickle would hold more than {self._budget} bytes of "
                                f"objects, the budget of a frame of its size (each "
                                f"frame may hold {AMPLIFICATION} times its size, at least "
                                f"{BUDGET_FLOOR} bytes)")

    def _instantiate(self, klass, args):
        super()._instantiate(self._named(klass, "OBJ/INST"), args)


def _guarded(rule, load, pushes: bool):
    """The opcode ``load`` with ``rule(unpickler)`` run before it (it may raise; it returns
    what the opcode adds to a container), then charged, with the object it pushed if it
    ``pushes`` one."""
    if pushes:
        def guarded(self):
            cost = rule(self)
            load(self)
            self._charge(cost + _STACK_SLOT + _size(self.stack[-1]))
    else:
        def guarded(self):
            cost = rule(self)
            load(self)
            self._charge(cost)
    return guarded


def _before_reduce(self):
    self._named(self.stack[-2], "REDUCE")
    return 0


def _before_newobj(self):
    cls = self._named(self.stack[-2], "NEWOBJ")
    if not isinstance(cls, type):
        raise _refuse(f"NEWOBJ needs a class, got {type(cls).__name__}")
    return 0


def _before_newobj_ex(self):
    cls = self._named(self.stack[-3], "NEWOBJ_EX")
    if not isinstance(cls, type):
        raise _refuse(f"NEWOBJ_EX needs a class, got {type(cls).__name__}")
    return 0


def _before_build(self):
    self._changeable(self.stack[-2], "BUILD")
    state = self.stack[-1]
    if isinstance(state, tuple) and len(state) == 2:
        return sum(_DICT_ITEM * len(part) for part in state if isinstance(part, dict))
    return _DICT_ITEM * len(state) if isinstance(state, dict) else 0


def _before_append(self):
    self._changeable(self.stack[-2], "APPEND")
    return _LIST_ITEM


def _before_appends(self):
    self._changeable(self.metastack[-1][-1], "APPENDS")
    return _LIST_ITEM * len(self.stack)


def _before_setitem(self):
    self._changeable(self.stack[-3], "SETITEM")
    return _DICT_ITEM


def _before_setitems(self):
    self._changeable(self.metastack[-1][-1], "SETITEMS")
    return _DICT_ITEM * (len(self.stack) // 2)


def _before_additems(self):
    target = self.metastack[-1][-1]
    self._changeable(target, "ADDITEMS")
    if not isinstance(target, set):
        raise _refuse(f"ADDITEMS needs a set, got {type(target).__name__}")
    return _SET_ITEM * len(self.stack)


def _nothing_before(self):
    return 0


def _install_rules() -> None:
    dispatch = RestrictedUnpickler.dispatch
    rules = {pickle.REDUCE: _before_reduce, pickle.NEWOBJ: _before_newobj,
             pickle.NEWOBJ_EX: _before_newobj_ex}
    changing = {pickle.BUILD: _before_build, pickle.APPEND: _before_append,
                pickle.APPENDS: _before_appends, pickle.SETITEM: _before_setitem,
                pickle.SETITEMS: _before_setitems, pickle.ADDITEMS: _before_additems}
    # Every other opcode that pushes something is charged for what it pushed.
    pushing = (pickle.INT, pickle.BININT, pickle.BININT1, pickle.BININT2, pickle.LONG,
               pickle.LONG1, pickle.LONG4, pickle.STRING, pickle.BINSTRING,
               pickle.SHORT_BINSTRING, pickle.UNICODE, pickle.BINUNICODE,
               pickle.SHORT_BINUNICODE, pickle.BINUNICODE8, pickle.BINBYTES,
               pickle.SHORT_BINBYTES, pickle.BINBYTES8, pickle.BYTEARRAY8, pickle.FLOAT,
               pickle.BINFLOAT, pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET,
               pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST,
               pickle.DICT, pickle.FROZENSET, pickle.INST, pickle.OBJ, pickle.PERSID,
               pickle.BINPERSID, pickle.NONE, pickle.NEWTRUE, pickle.NEWFALSE,
               pickle.EMPTY_TUPLE, pickle.GLOBAL, pickle.STACK_GLOBAL, pickle.EXT1,
               pickle.EXT2, pickle.EXT4, pickle.GET, pickle.BINGET, pickle.LONG_BINGET,
               pickle.DUP, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER)
    for opcode in pushing:
        rules.setdefault(opcode, _nothing_before)
    stock = pickle._Unpickler.dispatch
    for opcode, rule in rules.items():
        dispatch[opcode[0]] = _guarded(rule, stock[opcode[0]], pushes=True)
    for opcode, rule in changing.items():
        dispatch[opcode[0]] = _guarded(rule, stock[opcode[0]], pushes=False)

    def counted(cost, load):
        def charged(self):
            load(self)
            self._charge(cost)
        return charged

    for opcode in (pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT, pickle.MEMOIZE):
        dispatch[opcode[0]] = counted(_MEMO_ENTRY, stock[opcode[0]])
    dispatch[pickle.MARK[0]] = counted(_MARK, stock[pickle.MARK[0]])


_install_rules()


def restricted_loads(allowed):
    """A ``loads(data, buffers=None)`` for Channel.loads: pickle.loads when ``allowed`` is
    None, else one that loads through a RestrictedUnpickler. Checks ``allowed`` now."""
    if allowed is None:
        return pickle.loads
    checked = permits(allowed)

    def loads(data, buffers=None):
        return RestrictedUnpickler(io.BytesIO(data), allowed=checked, buffers=buffers,
                                   budget=budget_for(len(data))).load()

    return loads


def budget_for(size: int) -> int:
    """The memory budget of a restricted load of a pickle of ``size`` bytes: what the
    objects it makes may take, AMPLIFICATION times its size but at least BUDGET_FLOOR."""
    return max(BUDGET_FLOOR, AMPLIFICATION * size)


def channel_options(owner: str, max_frame: int, allowed) -> dict:
    """Check ``max_frame`` and ``allowed`` for ``owner`` before anything starts; return them
    as the Channel's keyword options."""
    _checks.max_frame(owner, max_frame)
    try:
        restricted_loads(allowed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{owner}: {exc}") from None
    return {"max_frame": max_frame, "allowed": allowed}


