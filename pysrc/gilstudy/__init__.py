"""gilstudy: how do I make CPU-bound Python use all the cores? Measured, not guessed.

The same CPU-bound kernels (``gilstudy.kernels``) run in every execution model Python
offers; a consumer interface (``send``/``close``) lets one consumer class run inline, in a
thread, as a coroutine or in another process.
"""

from gilstudy import kernels
from gilstudy.consumers import (
    Broadcast,
    Collect,
    Consumer,
    ConsumerThread,
    Dispatch,
    Inline,
    Runner,
    coroutine,
    threads,
)
from gilstudy.errors import (
    AuthenticationError,
    ConsumerError,
    CoprocessDied,
    GilstudyError,
    ProtocolError,
    RemoteError,
    UnknownKernelError,
)
from gilstudy.machine import describe as describe_machine
from gilstudy.machine import gil_enabled, usable_cores

__version__ = "0.1.0"

# Submodules that import numpy or the optional peers are loaded on first use, so that
# `import gilstudy` stays light: a coprocess child imports only what its consumer needs.
_LAZY_SUBMODULES = ("compare", "experiments")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"gilstudy.{name}")
    raise AttributeError(f"module 'gilstudy' has no attribute {name!r}")

__all__ = [
    "kernels",
    "compare",
    "experiments",
    "Consumer",
    "Runner",
    "Collect",
    "Inline",
    "ConsumerThread",
    "coroutine",
    "Broadcast",
    "Dispatch",
    "threads",
    "GilstudyError",
    "UnknownKernelError",
    "ConsumerError",
    "RemoteError",
    "CoprocessDied",
    "ProtocolError",
    "AuthenticationError",
    "describe_machine",
    "gil_enabled",
    "usable_cores",
    "__version__",
]
