"""Coprocesses that meet at a TCP address instead of being spawned: serve() listens and runs
a consumer, through the far-side loop, for each connection that proves it holds the key;
connect() makes such a connection and returns the RemoteConsumer that feeds it; and the
`gilstudy serve` command runs serve() from the command line.
"""

import ipaddress
import os
import socket
import sys
import threading
import time
from typing import Any, Callable

from gilstudy import _checks, wire
from gilstudy._waits import Gate
from gilstudy.admission import (MAX_CONNECTIONS, Admission, RefusalLog, format_address,
                                log_refusal)
from gilstudy.errors import AuthenticationError, ProtocolError, WorkerDied
from gilstudy.farside import serve_channel
from gilstudy.flow import MAX_IN_FLIGHT
from gilstudy.remote import RemoteConsumer, UnownedPeer, open_remote
from gilstudy.startup import check_factory, prepare
from gilstudy.transports import CONNECT_TIMEOUT, family, open_socket

__all__ = ["AUTHKEY_ENV", "CONNECT_TIMEOUT", "MAX_CONNECTIONS", "CLOSE_GRACE", "connect",
           "serve", "CoprocessServer", "parse_address", "import_factory",
           "add_subcommand"]

# Where serve(), connect() and `gilstudy serve` find the key when authkey= is not given:
# the variable's value, as bytes (UTF-8 for text). Both ends must have the same.
AUTHKEY_ENV = "GILSTUDY_AUTHKEY"

# How long CoprocessServer.close() waits, by default, for the threads of the connections it
# dropped, in seconds: a consumer busy with an item (or one that never returns) cannot be
# stopped from outside, and its connection is gone already.
CLOSE_GRACE = 1.0


def _resolve_key(who: str, authkey: bytes | None, insecure: bool) -> bytes | None:
    """The key a socket end authenticates with: ``authkey``, else GILSTUDY_AUTHKEY's bytes;
    None with ``insecure``. Raises ValueError when there is none and insecure is false."""
    if insecure:
        if authkey is not None:
            raise ValueError(f"{who}: pass authkey or insecure=True, not both")
        return None
    if authkey is None:
        value = os.environ.get(AUTHKEY_ENV)
        if not value:
            raise ValueError(
                f"{who}: a socket needs a key: pass authkey=b'...' or set {AUTHKEY_ENV} (the "
                "same on both ends); insecure=True goes without one, and then anyone who "
                "can connect can run code in this process")
        return os.fsencode(value)
    if not isinstance(authkey, (bytes, bytearray, memoryview)):
        raise TypeError(f"{who}: authkey must be bytes, got {type(authkey).__name__}")
    if not len(authkey):
        raise ValueError(f"{who}: authkey must not be empty")
    return bytes(authkey)


def connect(address: tuple[str, int], results: Any = None, *, authkey: bytes | None = None,
            insecure: bool = False, allowed=None, max_frame: int = wire.MAX_FRAME,
            timeout: float | None = CONNECT_TIMEOUT,
            max_in_flight: int = MAX_IN_FLIGHT) -> RemoteConsumer:
    """Connect to a server started by serve() (or ``gilstudy serve``) at ``(host, port)``;
    return the RemoteConsumer that feeds the consumer the server builds for this
    connection. ``pid`` is the server's process.

    Both ends prove that they hold the same key before anything is unpickled: ``authkey``
    (bytes), else the bytes of the environment variable GILSTUDY_AUTHKEY; without either
    connect raises ValueError, unless ``insecure=True`` (for a server started with
    insecure=True: no key, and anyone who can reach either end can run code in it).
    ``allowed`` restricts what results may load (see gilstudy.wire.RestrictedUnpickler);
    ``max_frame`` bounds each frame this end reads (the server says what it reads);
    ``max_in_flight`` the items sent and not yet acknowledged (see gilstudy.flow).

    Raises OSError (ConnectionRefusedError...) if nothing listens there, TimeoutError if the
    server has not accepted the connection and finished the handshake within ``timeout``
    seconds (one deadline for the whole handshake, however the server spaces its bytes;
    the message says whether its HELLO had arrived in part; None: wait for ever),
    AuthenticationError if the server refuses our key or fails to prove its own,
    ProtocolError if the peer is not a gilstudy server, and WorkerDied if it closes or
    resets the connection before its HELLO (as a server at its cap of connections does).
    """
    authkey = _resolve_key("connect", authkey, insecure)
    start = prepare("connect", results=results, max_frame=max_frame, allowed=allowed,
                    max_in_flight=max_in_flight)
    timeout = _checks.timeout("connect", timeout)
    host, port = address
    where = format_address(host, port)
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"connect: {where} did not accept the connection within "
                           f"{timeout:g} s") from None
    except (ConnectionResetError, ConnectionAbortedError):
        # Accepted, then dropped at once (the reset can beat connect() itself).
        raise WorkerDied(None, None, "connect: it reset the connection before its HELLO",
                            where=f"the server at {where}") from None
    channel = open_socket(sock, start.options, timeout)
    try:
        hello = _handshake_within(channel, timeout, started, pid=os.getpid(),
                                  flags=start.flags, authkey=authkey, accepting=False)
    except (EOFError, ConnectionError) as exc:
        channel.close()
        how = "closed" if isinstance(exc, EOFError) else "reset"
        raise WorkerDied(None, None, f"connect: it {how} the connection before its HELLO",
                            where=f"the server at {where}") from None
    except AuthenticationError as exc:
        channel.close()
        raise AuthenticationError(f"connect: the server at {where} did not accept: {exc}") \
            from None
    except TimeoutError as exc:
        channel.close()
        how_far = getattr(exc, "how_far", None)
        raise TimeoutError(f"connect: the server at {where} did not finish the handshake "
                           f"within {timeout:g} s" + (f"; {how_far}" if how_far else "")) \
            from None
    except BaseException:
        channel.close()
        raise
    sock.settimeout(None)
    return open_remote(channel, UnownedPeer(f"coprocess at {where}", hello.pid), start,
                       where=f"connection to {where}", greet=False)


def _handshake_within(channel: wire.Channel, timeout: float | None, started: float,
                      **handshake) -> wire.Hello:
    """wire.handshake(channel, **handshake) under one deadline for all of it, ``timeout``
    seconds after ``started`` (time.monotonic() when connect() began), however the server
    spaces its bytes (the socket's own timeout bounds each read only). When it passes, the connection is shut down and TimeoutError raised,
    saying how far the server's HELLO had come."""
    if timeout is None:
        return wire.handshake(channel, **handshake)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        channel.shutdown()

    timer = threading.Timer(max(0.0, started + timeout - time.monotonic()), expire)
    timer.name = "gilstudy-connect-deadline"
    timer.daemon = True
    timer.start()
    try:
        return wire.handshake(channel, **handshake)
    except Exception as exc:
        if not expired.is_set():
            raise
        if isinstance(exc, ProtocolError) and "inside" in str(exc):
            how_far = f"its HELLO had arrived in part ({exc})"
        elif isinstance(exc, EOFError):
            how_far = "nothing of its HELLO had arrived"
        else:
            how_far = f"the handshake had reached: {type(exc).__name__}: {exc}"
        timed_out = TimeoutError(how_far)
        timed_out.how_far = how_far
        raise timed_out from None
    finally:
        timer.cancel()
        timer.join()   # at once: a cancelled timer ends as soon as it wakes


# -- Serving: a consumer per connection -----------------------------------------------------

class CoprocessServer:
    """Listens on a TCP address and runs a consumer, built by ``factory(*args)``, for each
    connection, in a thread of its own, speaking the framed protocol; serve() makes one.

    ``address`` is the ``(host, port)`` it listens on (the real port when asked for 0).
    serve_forever() blocks until close(), which another thread or a signal handler may
    call; close() stops accepting, drops open connections (their consumers are abandoned,
    unclosed, once their current item is handled) and waits a while for their threads.

    Limits (gilstudy.admission): at most ``max_connections`` at once; at the cap the
    oldest connection still in its handshake gives way to a new one. A handshake must be
    done within ``handshake_timeout`` seconds of the accept, in all. When accept() runs out
    of file descriptors or a thread cannot be started, the oldest connection still in its
    handshake gives way, or the server rests briefly: it never spins. A connection whose
    peer fails the handshake (no key, a wrong key, not gilstudy, too slow) or breaks the
    protocol later (a frame too long, truncated or refused by ``allowed``) is logged on the
    ``gilstudy.coprocess`` logger, repeated lines summarised, and dropped; the server goes
    on serving the others.
    """

    def __init__(self, address: tuple[str, int], factory: Callable, args: tuple = (), *,
                 authkey: bytes | None = None, insecure: bool = False, allowed=None,
                 max_frame: int = wire.MAX_FRAME, max_connections: int = MAX_CONNECTIONS,
                 handshake_timeout: float = CONNECT_TIMEOUT):
        # The factory runs in this process: one defined in __main__ is fine.
        check_factory(factory, "serve", in_main_ok=True)
        self._authkey = _resolve_key("serve", authkey, insecure)
        options = wire.channel_options("serve", max_frame, allowed)
        _checks.positive_int("serve", "max_connections", max_connections)
        handshake_timeout = _checks.seconds("serve", "handshake_timeout", handshake_timeout)
        self._factory = factory
        self._args = args
        listener = socket.create_server(address, family=family(address[0]))
        self.address: tuple[str, int] = listener.getsockname()[:2]
        try:
            self._admission = Admission(
                listener, open=lambda sock: open_socket(sock, options, handshake_timeout),
                handshake=self._handshake, admitted=self._serve_connection,
                max_connections=max_connections, handshake_timeout=handshake_timeout,
                log=RefusalLog(f"gilstudy serve on {format_address(*self.address)}"),
                thread_name=f"gilstudy-serve-{self.address[1]}-conn")
        except BaseException:
            listener.close()
            raise
        self._closing = False
        self._acceptor_done = Gate()
        self._closed = Gate()
        self._is_closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"gilstudy-serve-{self.address[1]}")
        try:
            self._acceptor.start()
        except BaseException:
            self._admission.close(0)
            raise

    @property
    def is_closed(self) -> bool:
        """Whether close() was called."""
        return self._is_closed

    @property
    def connections(self) -> int:
        """Connections being served now (their handshake included)."""
        return self._admission.connections

    def _accept_loop(self) -> None:
        pause = 0.0
        try:
            while not self._closing:
                try:
                    self._admission.turn(None)
                    pause = 0.0
                except Exception as exc:
                    # Whatever failed (memory ran out...), the loop goes on after a rest.
                    pause = min(pause * 2 or 0.01, 0.5)
                    try:
                        self._admission.log.note(
                            "errors of the accept loop", f"the accept loop failed: "
                            f"{type(exc).__name__}: {exc}; going on in {pause:g} s")
                    except Exception:
                        pass  # not even that could be logged: going on matters more
                    time.sleep(pause)
        finally:
            self._acceptor_done.open()

    def _handshake(self, channel: wire.Channel) -> wire.Hello:
        return wire.handshake(channel, pid=os.getpid(), authkey=self._authkey, accepting=True)

    def _serve_connection(self, channel: wire.Channel, hello: wire.Hello) -> bool:
        serve_channel(channel, factory=lambda: self._factory(*self._args), hello=hello)
        return False

    def serve_forever(self) -> None:
        """Block until close() (from another thread) or an exception such as
        KeyboardInterrupt; connections are served all the while."""
        self._closed.wait()

    def close(self, timeout: float | None = CLOSE_GRACE) -> None:
        """Stop accepting and drop open connections: their sockets are shut down, so a
        connection's thread ends as soon as its consumer returns from the call it is in.
        Wait up to ``timeout`` seconds (None: for ever) for those threads; a consumer still
        busy then is left to return in its daemon thread, and a warning says how many were.
        Idempotent; a close() cut short by Ctrl-C can be called again."""
        timeout = _checks.timeout("CoprocessServer.close", timeout)
        self._closing = True
        self._admission.wake()
        self._acceptor_done.wait()
        # The gate opens as the loop's last act, so this join is over at once; without it
        # the thread may still be listed as alive when close() returns.
        self._acceptor.join()
        busy = self._admission.close(timeout)
        if busy and not self._is_closed:
            log_refusal("gilstudy serve on %s: closed with %d connection%s whose consumer had "
                        "not returned after %s s; left to finish in daemon threads",
                        format_address(*self.address), len(busy), "s" if len(busy) != 1 else "",
                        f"{timeout:g}")
        if not self._is_closed:
            self._is_closed = True
            self._closed.open()

    def __enter__(self) -> "CoprocessServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "serving"
        return f"<CoprocessServer on {format_address(*self.address)}, {state}>"


def serve(address: tuple[str, int], factory: Callable, *args: Any,
          authkey: bytes | None = None, insecure: bool = False, allowed=None,
          max_frame: int = wire.MAX_FRAME, max_connections: int = MAX_CONNECTIONS,
          handshake_timeout: float = CONNECT_TIMEOUT) -> CoprocessServer:
    """Listen on ``address`` (``(host, port)``; port 0 picks a free one) and run the
    consumer ``factory(*args)`` for each connection made with connect(); return the
    running CoprocessServer at once (see it for stopping and for its limits).

    Items arrive pickled, and unpickling runs code the sender chooses, so every client
    first proves that it holds the key: ``authkey`` (bytes), else the bytes of the
    environment variable GILSTUDY_AUTHKEY; without either serve raises ValueError.
    ``insecure=True`` serves without a key: anyone who can connect can then run code in
    this process. ``allowed`` (a set of "module.qualname" strings or a callable, see
    gilstudy.wire.RestrictedUnpickler) limits what items may load, for clients trusted with
    the key but not with code; ``max_frame`` bounds each frame a client sends;
    ``max_connections`` bounds the connections served at once and ``handshake_timeout``
    (seconds) the whole handshake of each.
    """
    return CoprocessServer(address, factory, args, authkey=authkey, insecure=insecure,
                           allowed=allowed, max_frame=max_frame,
                           max_connections=max_connections,
                           handshake_timeout=handshake_timeout)


# -- The `gilstudy serve` command -----------------------------------------------------------

def parse_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) → ``(host, port)``; ValueError otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {text!r}: port must be an integer, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {text!r}: port must be in 0..65535, got {port}")
    return host, port


def import_factory(text: str) -> Callable:
    """``"module:name"`` (``name`` may be dotted) → the callable it names. Raises
    ValueError for a malformed name, ImportError or AttributeError when it is missing."""
    import importlib

    module_name, sep, qualname = text.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"factory must be MODULE:NAME, got {text!r}")
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"factory {text!r} is not callable")
    return obj


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run_serve(args) -> int:
    allowed = set(args.allow) if args.allow else None
    try:
        # Every option is checked before the factory's module is imported.
        address = parse_address(args.address)
        wire.channel_options("serve", args.max_frame, allowed)
        _checks.positive_int("serve", "max_connections", args.max_connections)
        _checks.seconds("serve", "handshake_timeout", args.handshake_timeout)
    except (TypeError, ValueError, OverflowError) as exc:
        print(f"gilstudy serve: error: {exc}", file=sys.stderr)
        return 2
    # Like `python -m`, look for the factory's module in the current directory too.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = import_factory(args.factory)
    except Exception as exc:
        print(f"gilstudy serve: error: cannot import factory {args.factory!r}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if not args.insecure and not os.environ.get(AUTHKEY_ENV):
        print(f"gilstudy serve: error: set {AUTHKEY_ENV} to the key clients will use, or pass "
              "--insecure to serve without one (anyone who can connect can then run code "
              "here)", file=sys.stderr)
        return 2
    if not _is_loopback(address[0]):
        if args.insecure:
            print(f"gilstudy serve: warning: {address[0]} is not a loopback address and "
                  "--insecure is on: whoever can connect can run code in this process",
                  file=sys.stderr)
        else:
            print(f"gilstudy serve: warning: {address[0]} is not a loopback address: the key "
                  "keeps strangers out, but the traffic is neither encrypted nor protected "
                  "from tampering on the way; tunnel it (SSH, TLS, WireGuard) across "
                  "networks you do not trust", file=sys.stderr)
    try:
        server = serve(address, factory, *args.args, insecure=args.insecure, allowed=allowed,
                       max_frame=args.max_frame, max_connections=args.max_connections,
                       handshake_timeout=args.handshake_timeout)
    except (TypeError, ValueError, OverflowError) as exc:
        print(f"gilstudy serve: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gilstudy serve: error: cannot listen on {args.address}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    with server:
        print(f"serving on {format_address(*server.address)}", flush=True)
        server.serve_forever()
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy serve`` on the CLI's subparsers."""
    from gilstudy.cli import add_command

    parser = add_command(
        subparsers, "serve", help="run a consumer for each connection to HOST:PORT",
        description="Listen on HOST:PORT and, for each connection made with "
                    "gilstudy.coprocess.connect(), build a consumer with FACTORY(*ARGS) "
                    "(ARGs are passed as strings; put -- before any that starts with -) "
                    "and feed it the items sent. Prints 'serving on HOST:PORT' once "
                    "listening; stop it with Ctrl-C. Items are pickles, which can run "
                    f"code: each client must first prove it holds the key in {AUTHKEY_ENV} "
                    "(its value's bytes; give connect() the same).")
    parser.add_argument("address", metavar="HOST:PORT",
                        help="where to listen; port 0 picks a free port")
    parser.add_argument("factory", metavar="MODULE:FACTORY",
                        help="importable callable that returns a consumer (looked up from "
                             "the current directory too)")
    parser.add_argument("args", nargs="*", metavar="ARG", help="arguments to FACTORY")
    parser.add_argument("--insecure", action="store_true",
                        help=f"serve without a key ({AUTHKEY_ENV} unset): anyone who can "
                             "connect can run code in this process")
    parser.add_argument("--allow", action="append", metavar="MODULE.NAME",
                        help="load only these globals from items (repeat for each; the "
                             "builtin containers and scalars need none)")
    parser.add_argument("--max-frame", type=int, default=wire.MAX_FRAME, metavar="BYTES",
                        help=f"largest frame a client may send (default {wire.MAX_FRAME})")
    parser.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                        help="connections served at once; at the cap, the oldest one still "
                             f"in its handshake gives way to a new one (default "
                             f"{MAX_CONNECTIONS})")
    parser.add_argument("--handshake-timeout", type=float, default=CONNECT_TIMEOUT,
                        metavar="SECONDS",
                        help="time a new connection has to finish its whole handshake "
                             f"(default {CONNECT_TIMEOUT:g})")
    parser.set_defaults(run=_run_serve)
