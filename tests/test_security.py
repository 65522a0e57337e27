# Who may talk to a coprocess: serve(), connect(), `gilstudy serve` and spawn()'s socket need a
# key; a stranger (no key, a wrong key, a replayed handshake, garbage) never gets anything
# unpickled, and the server goes on serving clients with the key; allowed= restricts what a
# trusted peer may load; the server's limits (its cap, its handshake deadline) hold, and a
# stranger on spawn()'s socket cannot hold up the child. The consumer under attack records
# every call it gets, and every attack carries a pickle that would create a marker
# directory if it were ever loaded.

import fractions
import os
import pickle
import random
import re
import socket
import subprocess
import sys
import time

import pytest

import _coprocess_consumers as cc
from gilstudy import cli, wire
from gilstudy.coprocess import AUTHKEY_ENV, Coprocess, connect, parse_address, serve, spawn
from gilstudy.errors import AuthenticationError, CoprocessDied, ProtocolError, RemoteError
from gilstudy.server import CLOSE_GRACE

pytestmark = pytest.mark.one_pass

# Only reached when something deadlocks.
TIMEOUT = 60
# What a loaded 2-core machine may add to a bound.
SLACK = 2.0
LOOPBACK = ("127.0.0.1", 0)
KEY = b"the right key"


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv(AUTHKEY_ENV, raising=False)


class Plant:
    """Unpickling this creates the directory ``path``: the proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def items_frame(*items) -> bytes:
    payload = pickle.dumps(list(items), 5)
    return wire.HEADER.pack(wire.ITEMS, len(payload)) + payload


def frame(kind: int, payload: bytes = b"") -> bytes:
    return wire.HEADER.pack(kind, len(payload)) + payload


def hello(flags: int) -> bytes:
    return frame(wire.HELLO, wire.HELLO_BODY.pack(wire.MAGIC, wire.VERSION, flags, 666,
                                                  wire.MAX_FRAME))


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def server_nonce(sock: socket.socket) -> bytes:
    """Read the server's HELLO and NONCE frames; return the nonce."""
    read_exactly(sock, wire.HEADER.size + wire.HELLO_BODY.size)
    kind, length = wire.HEADER.unpack(read_exactly(sock, wire.HEADER.size))
    assert (kind, length) == (wire.NONCE, wire.NONCE_SIZE)
    return read_exactly(sock, wire.NONCE_SIZE)


def wait_until_dropped(sock: socket.socket) -> None:
    """Until the server has closed the connection (having logged why)."""
    sock.settimeout(TIMEOUT)
    try:
        while sock.recv(1 << 16):
            pass
    except ConnectionResetError:
        pass


def record_a_handshake(address) -> bytes:
    """What a client holding the key sends to open a connection to ``address``."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        mine = b"n" * wire.NONCE_SIZE
        opening = hello(wire.AUTHENTICATE) + frame(wire.NONCE, mine)
        sock.sendall(opening)
        theirs = server_nonce(sock)
        proof = frame(wire.PROOF, wire.proof(KEY, False, mine, theirs))
        sock.sendall(proof + frame(wire.CLOSE))
        wait_until_dropped(sock)
    return opening + proof


def attack_without_a_key(sock, marker, _recorded):
    sock.sendall(hello(0) + items_frame(Plant(marker)) + frame(wire.CLOSE))


def attack_with_a_wrong_key(sock, marker, _recorded):
    mine = os.urandom(wire.NONCE_SIZE)
    sock.sendall(hello(wire.AUTHENTICATE) + frame(wire.NONCE, mine))
    theirs = server_nonce(sock)
    # The items go at once, without waiting for the server's proof.
    sock.sendall(frame(wire.PROOF, wire.proof(b"a wrong key", False, mine, theirs))
                 + items_frame(Plant(marker)) + frame(wire.CLOSE))


def attack_with_a_replayed_handshake(sock, marker, recorded):
    sock.sendall(recorded + items_frame(Plant(marker)) + frame(wire.CLOSE))


def attack_with_garbage(sock, marker, _recorded):
    garbage = random.Random(1).randbytes(200)
    sock.sendall(garbage + items_frame(Plant(marker)) + frame(wire.CLOSE))


def attack_with_a_hello_kind_then_garbage(sock, marker, _recorded):
    sock.sendall(bytes([wire.HELLO]) + random.Random(2).randbytes(200)
                 + items_frame(Plant(marker)))


ATTACKS = [
    (attack_without_a_key, r"refused a connection from 127\.0\.0\.1:\d+: the peer does not "
                           r"authenticate"),
    (attack_with_a_wrong_key, r"refused a connection from 127\.0\.0\.1:\d+: the peer failed to "
                              r"prove that it holds the key"),
    (attack_with_a_replayed_handshake, r"refused a connection from 127\.0\.0\.1:\d+: the peer "
                                       r"failed to prove that it holds the key"),
    (attack_with_garbage, r"dropped a connection from 127\.0\.0\.1:\d+: unknown frame kind"),
    (attack_with_a_hello_kind_then_garbage, r"dropped a connection from 127\.0\.0\.1:\d+: a "
                                            r"HELLO frame of \d+ bytes, more than the 18 "
                                            r"allowed here"),
]


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("attack, logged", ATTACKS,
                         ids=["no-key", "wrong-key", "replayed-handshake", "garbage",
                              "hello-then-garbage"])
def test_a_stranger_gets_nothing_unpickled_and_the_server_goes_on(attack, logged, tmp_path,
                                                                  caplog):
    record, marker = tmp_path / "record", tmp_path / "marker"
    with serve(LOOPBACK, cc.Echo, authkey=KEY) as elsewhere:
        recorded = record_a_handshake(elsewhere.address)
    with serve(LOOPBACK, cc.Recorder, str(record), authkey=KEY) as server:
        with socket.create_connection(server.address, timeout=TIMEOUT) as sock:
            try:
                attack(sock, marker, recorded)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                pass  # the server hung up first
            wait_until_dropped(sock)
        assert re.search(logged, caplog.text), caplog.text
        assert not marker.exists() and not record.exists()
        results = []
        with connect(server.address, results=cc.Appender(results), authkey=KEY) as consumer:
            consumer.send("the right client")
    assert results == ["the right client"]
    assert record.read_text() == "init\nsend 'the right client'\nclose\n"
    assert not marker.exists()


@pytest.mark.timeout(TIMEOUT)
def test_connect_with_a_wrong_key_raises_authentication_error(caplog):
    with serve(LOOPBACK, cc.Echo, authkey=KEY) as server:
        with pytest.raises(AuthenticationError, match=r"^connect: the server at 127\.0\.0\.1:\d+ "
                                                      r"did not accept: the peer closed the "
                                                      r"connection instead of proving"):
            connect(server.address, authkey=b"a wrong key")
        with connect(server.address, authkey=KEY) as consumer:
            consumer.send(1)
    assert "failed to prove that it holds the key" in caplog.text


@pytest.mark.timeout(TIMEOUT)
def test_connect_without_a_key_to_a_server_with_one_raises_authentication_error(caplog):
    with serve(LOOPBACK, cc.Echo, authkey=KEY) as server:
        with pytest.raises(AuthenticationError, match=r"did not accept: the peer requires a key "
                                                      r"and this end has none"):
            connect(server.address, insecure=True)


@pytest.mark.timeout(TIMEOUT)
def test_connect_with_a_key_to_a_server_without_one_raises_authentication_error():
    with serve(LOOPBACK, cc.Echo, insecure=True) as server:
        with pytest.raises(AuthenticationError, match=r"did not accept: the peer does not "
                                                      r"authenticate \(it runs with "
                                                      r"insecure=True\)"):
            connect(server.address, authkey=KEY)


@pytest.mark.timeout(TIMEOUT)
def test_insecure_ends_talk_without_a_key():
    results = []
    with serve(LOOPBACK, cc.Echo, insecure=True) as server:
        with connect(server.address, results=cc.Appender(results), insecure=True) as consumer:
            consumer.send("plain")
    assert results == ["plain", "closed"]


@pytest.mark.timeout(TIMEOUT)
def test_the_key_may_come_from_the_environment_as_its_utf8_bytes(monkeypatch):
    monkeypatch.setenv(AUTHKEY_ENV, "clé")
    results = []
    with serve(LOOPBACK, cc.Echo) as server:
        with connect(server.address, results=cc.Appender(results)) as consumer:
            consumer.send(1)
        with connect(server.address, authkey="clé".encode()) as consumer:
            consumer.send(2)
    assert results == [1, "closed"]


MISSING_KEY = (r"^{who}: a socket needs a key: pass authkey=b'\.\.\.' or set GILSTUDY_AUTHKEY "
               r"\(the same on both ends\); insecure=True goes without one, and then anyone "
               r"who can connect can run code in this process$")


def test_serve_refuses_to_start_without_a_key():
    with pytest.raises(ValueError, match=MISSING_KEY.format(who="serve")):
        serve(LOOPBACK, cc.Echo)


def test_connect_refuses_to_start_without_a_key():
    with pytest.raises(ValueError, match=MISSING_KEY.format(who="connect")):
        connect(("127.0.0.1", 9))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"authkey": "text"}, TypeError, r"^serve: authkey must be bytes, got str$"),
    ({"authkey": b""}, ValueError, r"^serve: authkey must not be empty$"),
    ({"authkey": KEY, "insecure": True}, ValueError,
     r"^serve: pass authkey or insecure=True, not both$"),
], ids=["str", "empty", "both"])
def test_serve_refuses_a_bad_key(kwargs, error, message):
    with pytest.raises(error, match=message):
        serve(LOOPBACK, cc.Echo, **kwargs)


def test_gilstudy_serve_refuses_to_start_without_a_key(capsys):
    assert cli.main(["serve", "127.0.0.1:0", "_coprocess_consumers:Echo"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "gilstudy serve: error: set GILSTUDY_AUTHKEY to the key clients "
                              "will use, or pass --insecure to serve without one (anyone who "
                              "can connect can then run code here)\n")


# --- allowed: what a peer with the key may load ----------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_a_server_with_allowed_refuses_other_globals_and_goes_on(tmp_path, caplog):
    record, marker = tmp_path / "record", tmp_path / "marker"
    with serve(LOOPBACK, cc.Recorder, str(record), authkey=KEY, allowed=set()) as server:
        consumer = connect(server.address, authkey=KEY)
        consumer.send(Plant(marker))
        with pytest.raises(RemoteError) as info:
            consumer.close()
        assert info.value.remote_type == "gilstudy.errors.ProtocolError"
        assert info.value.remote_message == ("refused to unpickle global 'posix.mkdir': it is "
                                             "not in allowed")
        assert (info.value.sent, info.value.acknowledged) == (1, 0)
        with connect(server.address, authkey=KEY) as consumer:
            consumer.send(("plain", 1))
    assert not marker.exists()
    assert record.read_text() == "init\ninit\nsend ('plain', 1)\nclose\n"
    assert re.search(r"dropped a connection from 127\.0\.0\.1:\d+: refused to unpickle global "
                     r"'posix\.mkdir'", caplog.text)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("opener", ["connect", "spawn"])
def test_results_load_only_the_globals_allowed(opener):
    import fractions

    if opener == "connect":
        server = serve(LOOPBACK, cc.Echo, authkey=KEY)
        consumer = connect(server.address, results=cc.Appender([]), authkey=KEY,
                           allowed={"builtins.complex"})
    else:
        server = None
        consumer = spawn(cc.Echo, results=cc.Appender([]), allowed={"builtins.complex"})
    try:
        consumer.send(1j)
        consumer.send(fractions.Fraction(1, 3))
        with pytest.raises(ProtocolError, match=r"^refused to unpickle global "
                                                r"'fractions\.Fraction': it is not in allowed"):
            consumer.close()
    finally:
        consumer.abort()
        if server is not None:
            server.close()


def test_the_plain_protocol_reader_loads_only_the_globals_allowed(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "stream"
    path.write_bytes(pickle.dumps(1) + pickle.dumps(Plant(marker)))
    got = []
    with open(path, "rb") as stream:
        with pytest.raises(ProtocolError, match=r"^refused to unpickle global 'posix\.mkdir'"):
            Coprocess(stream, cc.Appender(got), allowed=set()).run()
    assert got == [1] and not marker.exists()


# --- spawn()'s socket -------------------------------------------------------------------------

@pytest.mark.timeout(TIMEOUT)
def test_a_stranger_on_spawns_socket_is_dropped_and_the_child_gets_through(monkeypatch, caplog):
    # The stranger connects after spawn() listens and before its child even starts.
    real_popen = subprocess.Popen
    strangers = []

    def popen_after_a_stranger(argv, **kwargs):
        host, port = argv[-2], int(argv[-1])
        stranger = socket.create_connection((host, port), timeout=TIMEOUT)
        stranger.sendall(b"GET / HTTP/1.1\r\n\r\n")
        strangers.append(stranger)
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen_after_a_stranger)
    results = []
    try:
        with spawn(cc.Echo, transport="socket", results=cc.Appender(results)) as consumer:
            monkeypatch.undo()
            consumer.send("through")
    finally:
        for stranger in strangers:
            stranger.close()
    assert results == ["through", "closed"]
    assert re.search(r"gilstudy spawn on socket 127\.0\.0\.1:\d+: dropped a connection from "
                     r"127\.0\.0\.1:\d+: the peer is not a gilstudy end: it sent an HTTP "
                     r"request, beginning b'GET / HTT'", caplog.text)


@pytest.mark.timeout(TIMEOUT)
def test_spawns_key_is_in_neither_the_childs_command_line_nor_its_environment():
    with spawn(cc.Count, transport="socket") as consumer:
        with open(f"/proc/{consumer.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{consumer.pid}/environ", "rb") as f:
            environment = f.read()
    assert argv[3:5] == [b"socket", str(wire.MAX_FRAME).encode()]
    assert argv[5].isdigit()  # the descriptor the key is read from
    assert AUTHKEY_ENV.encode() not in environment


@pytest.mark.timeout(TIMEOUT)
def test_gilstudy_serve_takes_its_key_from_the_environment_and_allowed_globals(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    command = subprocess.Popen(
        [sys.executable, "-m", "gilstudy", "serve", "127.0.0.1:0", "_coprocess_consumers:Echo",
         "--allow", "fractions.Fraction", "--max-frame", "100000"],
        env={**os.environ, "PYTHONPATH": here, AUTHKEY_ENV: "from the environment"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = parse_address(command.stdout.readline().split()[-1])
        results = []
        with connect(address, results=cc.Appender(results),
                     authkey=b"from the environment") as consumer:
            consumer.send(fractions.Fraction(1, 3))
        assert results == [fractions.Fraction(1, 3), "closed"]
        consumer = connect(address, authkey=b"from the environment")
        consumer.send(Plant(tmp_path / "marker"))
        with pytest.raises(RemoteError, match=r"refused to unpickle global 'posix\.mkdir'"):
            consumer.close()
    finally:
        command.terminate()
        command.communicate(timeout=TIMEOUT)
    assert not (tmp_path / "marker").exists()


def test_gilstudy_serve_refuses_a_bad_frame_limit_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv(AUTHKEY_ENV, "k")
    assert cli.main(["serve", "127.0.0.1:0", "_coprocess_consumers:Echo", "--max-frame",
                     "10"]) == 2
    assert capsys.readouterr().err == ("gilstudy serve: error: serve: max_frame must be >= "
                                       "1024, got 10\n")


# --- Limits: the cap, the handshake deadline, a consumer that never returns ---------------------

@pytest.mark.timeout(TIMEOUT)
def test_at_the_cap_with_every_connection_serving_a_new_one_is_refused_at_once(caplog):
    with serve(LOOPBACK, cc.Echo, authkey=KEY, max_connections=2) as server:
        first, second = (connect(server.address, authkey=KEY) for _ in range(2))
        start = time.monotonic()
        with pytest.raises(CoprocessDied, match=r"^the server at 127\.0\.0\.1:\d+ stopped "
                                                r"answering: connect: it (closed|reset) the "
                                                r"connection before its HELLO$"):
            connect(server.address, authkey=KEY, timeout=TIMEOUT)
        assert time.monotonic() - start < SLACK
        first.close()
        wait_until(lambda: server.connections == 1)
        results = []
        with connect(server.address, results=cc.Appender(results), authkey=KEY) as third:
            third.send("served once there was room")
        second.close()
    assert results == ["served once there was room", "closed"]
    assert re.search(r"refused a connection from 127\.0\.0\.1:\d+: all 2 connections are in "
                     r"use \(max_connections\)", caplog.text)


@pytest.mark.timeout(TIMEOUT)
def test_at_the_cap_the_oldest_connection_still_in_its_handshake_gives_way(caplog):
    with serve(LOOPBACK, cc.Echo, authkey=KEY, max_connections=2) as server:
        with connect(server.address, authkey=KEY) as serving:
            idle = socket.create_connection(server.address, timeout=TIMEOUT)
            wait_until(lambda: server.connections == 2)
            results = []
            with connect(server.address, results=cc.Appender(results), authkey=KEY) as newer:
                newer.send("in")
            wait_until_dropped(idle)  # the idle stranger made room
            idle.close()
            serving.send("still served")
    assert results == ["in", "closed"]
    assert re.search(r"dropped a connection from 127\.0\.0\.1:\d+: it gave way to a newer "
                     r"connection at the cap of 2 connections", caplog.text)


@pytest.mark.timeout(TIMEOUT)
def test_the_handshake_deadline_is_one_for_the_whole_handshake(caplog):
    # A byte every 0.1 s never leaves a read waiting long, yet the stranger is dropped
    # once the deadline of 0.5 s passes.
    with serve(LOOPBACK, cc.Echo, authkey=KEY, handshake_timeout=0.5) as server:
        with socket.create_connection(server.address, timeout=TIMEOUT) as stranger:
            start = time.monotonic()
            try:
                for byte in hello(wire.AUTHENTICATE):
                    stranger.sendall(bytes([byte]))
                    time.sleep(0.1)
            except OSError:
                pass  # hung up on
            wait_until_dropped(stranger)
            assert 0.5 <= time.monotonic() - start < 0.5 + SLACK
    assert re.search(r"dropped a connection from 127\.0\.0\.1:\d+: no handshake within 0\.5 s",
                     caplog.text)


@pytest.mark.timeout(TIMEOUT)
def test_server_close_returns_within_its_grace_while_a_consumer_never_returns(tmp_path, caplog):
    release = tmp_path / "release"
    server = serve(LOOPBACK, cc.Blocker, str(release), authkey=KEY)
    consumer = connect(server.address, authkey=KEY)
    try:
        consumer.send("stuck")
        consumer.flush()
        wait_until(lambda: server.connections == 1)
        start = time.monotonic()
        server.close()
        assert time.monotonic() - start < CLOSE_GRACE + SLACK
        assert server.is_closed
        assert re.search(r"closed with 1 connection whose consumer had not returned after 1 s; "
                         r"left to finish in daemon threads", caplog.text)
    finally:
        release.touch()  # the consumer returns; its thread finds the connection gone and ends
        consumer.abort()
        server.close()


@pytest.mark.timeout(TIMEOUT)
def test_a_stranger_dawdling_on_spawns_socket_neither_delays_nor_blocks_the_child(monkeypatch,
                                                                                   caplog):
    # The stranger connects before the child starts and sends a HELLO a byte every 0.2 s:
    # 5 s in all, while the child's own handshake takes milliseconds.
    import threading

    real_popen = subprocess.Popen
    strangers = []

    def popen_after_a_dawdler(argv, **kwargs):
        host, port = argv[-2], int(argv[-1])
        stranger = socket.create_connection((host, port), timeout=TIMEOUT)

        def dawdle():
            try:
                for byte in hello(wire.AUTHENTICATE):
                    stranger.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass  # hung up on

        dawdler = threading.Thread(target=dawdle)
        dawdler.start()
        strangers.append((stranger, dawdler))
        return real_popen(argv, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen_after_a_dawdler)
    results = []
    start = time.monotonic()
    try:
        with spawn(cc.Echo, transport="socket", results=cc.Appender(results)) as consumer:
            started = time.monotonic() - start
            monkeypatch.undo()
            consumer.send("through")
    finally:
        for stranger, dawdler in strangers:
            stranger.close()
            dawdler.join(TIMEOUT)
    assert started < SLACK
    assert results == ["through", "closed"]


def wait_until(condition) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.005)
