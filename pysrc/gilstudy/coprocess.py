"""The coprocess API in one import: consumers that run in another Python process, fed with
pickled items. The work is done by modules with one job each, re-exported here::

  gilstudy.stream      the plain protocol (CoprocessSender, Coprocess): a bare pickle stream
  gilstudy.remote      RemoteConsumer, the framed sending end, the Peer interface, and
                       open_remote(), the near side's opening for every kind of runner
  gilstudy.link        what stands behind a RemoteConsumer (gilstudy.batching: the batch
                       and its flusher; gilstudy.replies: the reader; gilstudy.flow)
  gilstudy.startup     the start-up checks, and the SETUP frame that carries the factory
  gilstudy.farside     the far side's entry and loop, the same for every kind of worker
  gilstudy.transports  pipe, FIFO and socket, both ends of each
  gilstudy.processes   spawn() and coprocesses(), and the spawned child's entry point
  gilstudy.server      serve(), connect() and the `gilstudy serve` command
  gilstudy.wire        frames, the handshake, restricted unpickling
"""

from gilstudy.processes import coprocesses, spawn
from gilstudy.remote import EXIT_TIMEOUT, FLUSH_INTERVAL, Peer, RemoteConsumer
from gilstudy.server import (AUTHKEY_ENV, CONNECT_TIMEOUT, CoprocessServer, add_subcommand,
                             connect, import_factory, parse_address, serve)
from gilstudy.stream import Coprocess, CoprocessSender
from gilstudy.transports import START_TIMEOUT
from gilstudy.transports import TRANSPORTS as _TRANSPORT_CLASSES
from gilstudy.wire import MAX_FRAME

__all__ = [
    "TRANSPORTS", "FLUSH_INTERVAL", "START_TIMEOUT", "EXIT_TIMEOUT", "CONNECT_TIMEOUT",
    "AUTHKEY_ENV", "MAX_FRAME",
    "CoprocessSender", "Coprocess", "Peer",
    "RemoteConsumer", "spawn", "coprocesses", "connect",
    "CoprocessServer", "serve", "parse_address", "import_factory", "add_subcommand",
]

# The names spawn(transport=...) takes.
TRANSPORTS = tuple(_TRANSPORT_CLASSES)
