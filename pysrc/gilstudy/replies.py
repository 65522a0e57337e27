"""The reading half of a link (gilstudy.link): the thread that takes what the far side
sends back (acknowledgements, results, its error, DONE) and turns each into the link's
state: a count for flow control, a value for the results consumer, a failure.
"""

import threading

from gilstudy import wire
from gilstudy._waits import Gate
from gilstudy.errors import ProtocolError, RemoteError
from gilstudy.flow import EXIT_TIMEOUT

__all__ = ["ReplyReader"]


class ReplyReader:
    """The reader thread of one link. ``results`` receives the far side's results, in
    order; ``peer_done`` turns true when the far side said DONE (its consumer closed
    cleanly). Whatever else ends the reading (an error frame, EOF, a broken frame) is
    recorded as the link's failure. ``done`` opens as the thread leaves."""

    def __init__(self, link, results, expect_hello: bool, label: str):
        self.link = link
        self.results = results
        self.peer_done = False
        # Set when the link's finalizer ran in this thread itself: the reader closes the
        # channel on its way out.
        self.closes_channel = False
        self.done = Gate()
        self.thread = threading.Thread(target=self._read_loop, args=(expect_hello,),
                                       name=f"{label}-reader", daemon=True)

    def _read_loop(self, expect_hello: bool) -> None:
        link = self.link
        channel = link.channel
        name = link.peer.name
        acknowledge = link.flow.acknowledge
        try:
            if expect_hello:
                wire.read_hello(channel)
            while True:
                kind, payload = channel.read_frame()
                if kind == wire.ACK:
                    acknowledge(wire.ACK_BODY.unpack(payload)[0])
                elif kind == wire.RESULTS:
                    self._forward(payload)
                    payload = None   # not kept while the next frame is read
                elif kind == wire.ERROR:
                    link.fail(RemoteError(*wire.decode_error(channel, payload), where=name))
                elif kind == wire.DONE:
                    self.peer_done = True
                    return
                else:
                    raise ProtocolError(f"unexpected {wire.KIND_NAMES[kind]} frame from "
                                        f"{name}")
        except (EOFError, OSError):
            link.fail(link.died(link.peer.wait(EXIT_TIMEOUT),
                                f"its {link.where} closed before the consumer was closed"))
        except ProtocolError as exc:
            link.fail(exc)
        except Exception as exc:  # a malformed ACK (struct.error)
            link.fail(ProtocolError(f"malformed frame from {name}: {exc}"))
        finally:
            if self.closes_channel:
                channel.close()
            self.done.open()
            link.flow.wake()

    def _forward(self, payload) -> None:
        if self.results is None:
            return
        link = self.link
        try:
            values = link.channel.load(payload)
        except ProtocolError as exc:
            exc.add_note(f"gilstudy: a result from {link.peer.name} could not be unpickled")
            self.results = None
            link.fail(exc)
            return
        results = self.results
        # A frame's results in one call where the consumer takes several at once (Collect
        # does): a stream of tiny round trips spends less of the GIL delivering them.
        extend = getattr(results, "extend", None)
        try:
            if extend is not None:
                extend(values)
            else:
                send = results.send
                for value in values:
                    send(value)
        except Exception as exc:
            exc.add_note(f"gilstudy: raised by the results consumer of {link.peer.name}")
            self.results = None
            link.fail(exc)

    def is_current(self) -> bool:
        """Whether the calling thread is this reader."""
        return threading.current_thread() is self.thread
