"""gilstudy: how do I make CPU-bound Python use all the cores? Measured, not guessed.

The same CPU-bound kernels (``gilstudy.kernels``) run in every execution model Python
offers; a consumer interface (``send``/``close``) lets one consumer class run inline, in a
thread, as a coroutine, in another process or in a subinterpreter, and ``gilstudy.compare``
reports the speedup of each.

Every public name is loaded on first use (PEP 562): a coprocess child imports ``gilstudy``
to rebuild its consumer, and must not pay for threads, sockets or numpy it does not need.
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it: the consumer interface, the runner starters
# and the errors. Everything else is imported from its own module.
_EXPORTS = {
    # the consumer interface and the in-process runners
    "Consumer": "gilstudy.consumers",
    "Runner": "gilstudy.consumers",
    "Collect": "gilstudy.consumers",
    "Inline": "gilstudy.consumers",
    "ConsumerThread": "gilstudy.consumers",
    "coroutine": "gilstudy.consumers",
    "threads": "gilstudy.consumers",
    # fan-out, and the one way to start N runners of any kind
    "Broadcast": "gilstudy.dispatch",
    "Dispatch": "gilstudy.dispatch",
    "start_runners": "gilstudy.dispatch",
    # the starters of runners outside this interpreter
    "spawn": "gilstudy.processes",
    "coprocesses": "gilstudy.processes",
    "connect": "gilstudy.server",
    "serve": "gilstudy.server",
    "subinterpreter": "gilstudy.interpreters",
    "subinterpreters": "gilstudy.interpreters",
    "ranks": "gilstudy.mpi",
    "world": "gilstudy.mpi",
    # errors
    "GilstudyError": "gilstudy.errors",
    "UnknownKernelError": "gilstudy.errors",
    "ConsumerError": "gilstudy.errors",
    "RemoteError": "gilstudy.errors",
    "WorkerDied": "gilstudy.errors",
    "WorkerStalled": "gilstudy.errors",
    "ProtocolError": "gilstudy.errors",
    "AuthenticationError": "gilstudy.errors",
    "RunnerUnavailable": "gilstudy.errors",
    "MpiUnavailable": "gilstudy.errors",
    "SubinterpretersUnavailable": "gilstudy.errors",
    "CompareError": "gilstudy.errors",
    "ModelFailed": "gilstudy.errors",
    "WrongAnswer": "gilstudy.errors",
    "PythonExecutableFailed": "gilstudy.errors",
    "BrokenWorkerPool": "gilstudy.errors",
    # concurrent.futures over any runner kind
    "Executor": "gilstudy.executor",
}
# Names the top level had before it was cut down to the above: they still resolve, so code
# written against them runs, but are not public here (not in __all__, not in dir()).
_FORMER = {
    "CoprocessDied": "gilstudy.errors",
    "CoprocessStalled": "gilstudy.errors",
    "InterpreterFailed": "gilstudy.errors",
    "RemoteTraceback": "gilstudy.errors",
    "CoprocessServer": "gilstudy.server",
    "RemoteConsumer": "gilstudy.remote",
    "Peer": "gilstudy.remote",
    "shared_array": "gilstudy.shared",
    "is_shared": "gilstudy.shared",
    "Coprocess": "gilstudy.stream",
    "CoprocessSender": "gilstudy.stream",
    "describe_machine": "gilstudy.machine",
    "gil_enabled": "gilstudy.machine",
    "usable_cores": "gilstudy.machine",
}
_RENAMED = {"describe_machine": "describe"}
# Submodules reachable as attributes (``gilstudy.mpi``); of them only ``compare`` is in
# __all__. ``processes`` and ``server`` hold spawn and serve, whose names are public
# functions here, so no submodule may be named after a function.
_SUBMODULES = ("kernels", "consumers", "dispatch", "coprocess", "remote", "farside",
               "processes", "server", "stream", "transports", "wire", "shared", "interpreters",
               "mpi", "compare", "experiments", "pythons", "errors", "machine", "startup",
               "link", "executor", "mainscript")

__all__ = ["__version__", "compare", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name) or _FORMER.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    elif name in _SUBMODULES:
        value = importlib.import_module(f"gilstudy.{name}")
    else:
        raise AttributeError(f"module 'gilstudy' has no attribute {name!r}")
    if name not in _FORMER:
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
