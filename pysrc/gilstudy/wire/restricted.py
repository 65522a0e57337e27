"""Restricted unpickling: loading a pickle from a peer while resolving only the globals an
``allowed`` set or callable permits (see RestrictedUnpickler)."""

import collections.abc
import copyreg
import io
import pickle

from gilstudy import _checks
from gilstudy.errors import ProtocolError

__all__ = ["NUMPY_ARRAYS", "RestrictedUnpickler", "permits", "restricted_loads",
           "channel_options"]

# The globals a numpy array or scalar needs when loaded with restricted unpickling, for
# numpy 1.x (numpy.core) and 2.x (numpy._core): ``allowed=NUMPY_ARRAYS | {...}``.
NUMPY_ARRAYS = frozenset({
    "numpy.ndarray", "numpy.dtype",
    "numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy.core.numeric._frombuffer",
    "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
})


def permits(allowed):
    """``allowed`` (a set of "module.qualname" strings, or a callable(module, name) ->
    bool) as a callable; TypeError or ValueError for anything else."""
    if callable(allowed):
        return allowed
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, collections.abc.Iterable):
        raise TypeError(f"allowed must be a set of 'module.name' strings or a callable("
                        f"module, name), got {allowed!r}")
    names = frozenset(allowed)
    for name in names:
        if not isinstance(name, str) or "." not in name.strip("."):
            raise ValueError(f"allowed: each global must be a 'module.name' string, got "
                             f"{name!r}")
    return lambda module, name: f"{module}.{name}" in names


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that loads only the globals (classes, functions) that ``allowed``
    permits; any other raises ProtocolError naming it, before its module is imported.

    ``allowed`` is a set of ``"module.qualname"`` strings (``{"fractions.Fraction"}``) or a
    callable ``(module, qualname) -> bool``. Values pickle builds without a global load
    whatever ``allowed`` says: None, bools, ints, floats, str, bytes, bytearray, tuples,
    lists, dicts, sets and frozensets. Everything pickled by reference needs an entry,
    builtins such as ``builtins.complex`` and ``builtins.slice`` included; numpy arrays
    need NUMPY_ARRAYS.

    It is the pure-Python unpickler, about 15 times slower per item than the C one, on
    purpose: the C unpickler sizes its memo by the index a PUT opcode names, so a pickle of
    30 bytes can make it allocate and clear gigabytes; here the memo is a dict, and memory
    stays proportional to the pickle. (Out-of-band buffers are not parsed: arrays keep
    their speed.)
    """

    def __init__(self, file, *, allowed, buffers=None):
        super().__init__(file, buffers=buffers)
        self._permits = permits(allowed)

    def find_class(self, module: str, name: str):
        if not self._permits(module, name):
            raise ProtocolError(f"refused to unpickle global '{module}.{name}': it is not "
                                "in allowed")
        return super().find_class(module, name)

    def get_extension(self, code: int) -> None:
        # The stock one returns a global it has loaded before without asking find_class.
        key = copyreg._inverted_registry.get(code)
        if key is None:
            raise ProtocolError(f"unregistered pickle extension code {code}")
        self.append(self.find_class(*key))


def restricted_loads(allowed):
    """A ``loads(data, buffers=None)`` for Channel.loads: pickle.loads when ``allowed`` is
    None, else one that loads through a RestrictedUnpickler. Checks ``allowed`` now."""
    if allowed is None:
        return pickle.loads
    checked = permits(allowed)

    def loads(data, buffers=None):
        return RestrictedUnpickler(io.BytesIO(data), allowed=checked, buffers=buffers).load()

    return loads


def channel_options(owner: str, max_frame: int, allowed) -> dict:
    """Check ``max_frame`` and ``allowed`` for ``owner`` before anything starts; return them
    as the Channel's keyword options."""
    _checks.max_frame(owner, max_frame)
    try:
        restricted_loads(allowed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{owner}: {exc}") from None
    return {"max_frame": max_frame, "allowed": allowed}


