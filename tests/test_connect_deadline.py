# connect() has one deadline for its whole handshake: a server that sends a byte of its HELLO
# now and then, each within the socket's timeout, no longer holds the client past it, and
# the error says the HELLO had arrived in part.

import socket
import threading

import pytest

from gilstudy import wire
from gilstudy.coprocess import connect

TIMEOUT = 60


def dribbling_server(pace: float, stop: threading.Event):
    """A listener whose one connection gets a HELLO (then garbage) one byte every ``pace``
    seconds until ``stop``; returns its address and a list that holds the bytes sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent = []

    def run():
        connection, _ = listener.accept()
        body = wire.HELLO_BODY.pack(wire.MAGIC, wire.VERSION, wire.AUTHENTICATE, 1, 1 << 20)
        data = wire.HEADER.pack(wire.HELLO, len(body)) + body + bytes(10_000)
        with connection:
            for byte in data:
                if stop.wait(pace):
                    break
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    break
                sent.append(byte)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname(), sent, thread


@pytest.mark.timeout(TIMEOUT)
def test_a_server_that_dribbles_its_hello_is_cut_at_the_deadline():
    stop = threading.Event()
    address, sent, thread = dribbling_server(0.2, stop)
    try:
        with pytest.raises(TimeoutError, match=r"did not finish the handshake within 1 s; its "
                                               r"HELLO had arrived in part \(the channel "
                                               r"closed inside a"):
            connect(address, authkey=b"key", timeout=1)
        # Cut while the server still had bytes to send: each came within the socket's
        # timeout, which alone would have waited for all of them (10,000 s).
        assert 0 < len(sent) < 100
    finally:
        stop.set()
        thread.join(TIMEOUT)


@pytest.mark.timeout(TIMEOUT)
def test_a_server_that_sends_nothing_is_cut_at_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(TimeoutError, match=r"within 0\.5 s"):
            connect(listener.getsockname(), authkey=b"key", timeout=0.5)
    finally:
        listener.close()
