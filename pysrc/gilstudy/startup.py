"""How a worker's consumer is started, written once for every runner kind: on the near side,
the checks of the factory and of the options (prepare(), which every starter calls first)
and the SETUP frame that carries the factory across; on the far side, the consumer rebuilt
from that frame (build_from_setup()). A spawned child imports this module, so it imports
nothing beyond what that needs.
"""

import pickle
import sys
from typing import Any, Callable, NamedTuple

from gilstudy import _checks, mainscript, wire
from gilstudy.errors import ProtocolError
from gilstudy.flow import MAX_IN_FLIGHT

__all__ = ["Start", "prepare", "check_factory", "setup_payload", "build_from_setup"]


class Start(NamedTuple):
    """What a near side needs to open one worker, every part checked by prepare().

    ``owner`` names the starter in messages ("spawn"); ``setup`` is the SETUP payload, or
    None when the far side builds its own consumer (a server does); ``options`` are the
    channel's (``max_frame``, ``allowed``); ``results`` takes the consumer's results (None:
    the far side keeps them); ``max_in_flight`` bounds the items sent and not yet
    acknowledged.
    """

    owner: str
    setup: bytes | None
    options: dict
    results: Any
    max_in_flight: int

    @property
    def flags(self) -> int:
        """The HELLO flags that say what the near side wants back."""
        return wire.WANT_RESULTS if self.results is not None else 0

    @property
    def max_frame(self) -> int:
        return self.options["max_frame"]


def check_factory(factory: Callable, owner: str = "spawn", worker: str = "a coprocess",
                  in_main_ok: bool = False) -> None:
    """Refuse a ``factory`` that ``worker`` cannot rebuild from its pickle: one that is not
    callable (TypeError) or, unless ``in_main_ok`` (the workers run this same ``__main__``),
    is defined in a ``__main__`` that cannot be loaded again, such as an interactive session
    or ``python -c`` (ValueError; see gilstudy.mainscript)."""
    if not callable(factory):
        raise TypeError(f"{owner}: factory must be callable, got {factory!r} "
                        f"({type(factory).__name__})")
    if not in_main_ok:
        mainscript.check(owner, "factory", factory, worker)


def setup_payload(factory: Callable, args: tuple, max_frame: int, owner: str = "spawn") -> bytes:
    """The SETUP frame that makes the far side build ``factory(*args)`` (see
    build_from_setup()): this process's sys.path, the pickled call and how to load this
    process's main script (gilstudy.mainscript.describe()). Pickled before
    anything starts, so an unpicklable factory or argument fails here; ValueError when it
    is longer than ``max_frame``."""
    call = pickle.dumps((factory, args), wire.PICKLE_PROTOCOL)
    setup = pickle.dumps((sys.path, call, mainscript.describe()), wire.PICKLE_PROTOCOL)
    if len(setup) > max_frame:
        raise ValueError(f"{owner}: the factory and its arguments pickle to {len(setup)} "
                         f"bytes, more than max_frame ({max_frame})")
    return setup


def prepare(owner: str, factory: Callable | None = None, args: tuple = (), *,
            results: Any = None, max_frame: int = wire.MAX_FRAME, allowed=None,
            max_in_flight: int = MAX_IN_FLIGHT, worker: str = "a coprocess",
            in_main_ok: bool = False) -> Start:
    """Check what a starter was given and pickle the SETUP payload, before anything starts:
    ``factory`` (see check_factory(); None when the far side has its own, as a server
    does), ``results`` (a consumer or None), ``max_frame`` and ``allowed`` (see
    gilstudy.wire.channel_options), ``max_in_flight`` (a positive int). Each bad value
    raises TypeError or ValueError naming ``owner``, the argument and the rule."""
    if factory is not None:
        check_factory(factory, owner, worker, in_main_ok)
    options = wire.channel_options(owner, max_frame, allowed)
    _checks.results(owner, results)
    max_in_flight = _checks.positive_int(owner, "max_in_flight", max_in_flight)
    setup = None if factory is None else setup_payload(factory, args, max_frame, owner)
    return Start(owner, setup, options, results, max_in_flight)


def build_from_setup(channel) -> Any:
    """On the far side: read the SETUP frame, take the near side's sys.path (so that
    whatever it imports by name can be imported here too), then unpickle the factory and
    its arguments (which may need that path, or the near side's main script, loaded under
    ``__mp_main__`` when first needed: gilstudy.mainscript) and return ``factory(*args)``."""
    kind, payload = channel.read_frame()
    if kind != wire.SETUP:
        raise ProtocolError(f"expected a SETUP frame, got {wire.KIND_NAMES[kind]}")
    sys_path, call, main = channel.load(payload)
    sys.path[:] = sys_path
    mainscript.install(main)
    factory, args = channel.load(call)
    return factory(*args)
