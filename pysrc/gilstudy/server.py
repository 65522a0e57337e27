# Coprocesses that meet at a TCP address instead of being spawned: serve() listens and runs
# a consumer, through the far-side loop, for each connection that proves it holds the key;
# connect() makes such a connection and returns the RemoteConsumer that feeds it; and the
# `gilstudy serve` command runs serve() from the command line.

import ipaddress
import os
import selectors
import socket
import sys
import threading
from typing import Any, Callable

from gilstudy import _checks, wire
from gilstudy.errors import AuthenticationError, CoprocessDied, PeerGone, ProtocolError
from gilstudy.farside import run_far_side
from gilstudy.remote import RemoteConsumer, _Link
from gilstudy.transports import (CONNECT_TIMEOUT, describe_refusal, family, format_address,
                                 log_refusal, open_socket)

__all__ = ["AUTHKEY_ENV", "CONNECT_TIMEOUT", "connect", "serve", "CoprocessServer",
           "ServerConnection", "parse_address", "import_factory", "add_subcommand"]

# Where serve(), connect() and `gilstudy serve` find the key when authkey= is not given:
# the variable's value, as bytes (UTF-8 for text). Both ends must have the same.
AUTHKEY_ENV = "GILSTUDY_AUTHKEY"


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


class ServerConnection:
    """The Peer (gilstudy.remote.Peer) of a connection made with connect(): the server's
    process is not ours, so its end cannot be waited for or known; only closing the
    connection ends our side of it. ``pid`` is the server's, as its HELLO said."""

    def __init__(self, pid: int, address: str):
        self.pid = pid
        self.name = f"coprocess at {address}"

    def wait(self, timeout: float) -> int | None:
        return None

    def stop(self, force: bool) -> bool:
        return False


def connect(address: tuple[str, int], results: Any = None, *, authkey: bytes | None = None,
            insecure: bool = False, allowed=None, max_frame: int = wire.MAX_FRAME,
            timeout: float | None = CONNECT_TIMEOUT) -> RemoteConsumer:
    """Connect to a server started by serve() (or ``gilstudy serve``) at ``(host, port)``;
    return the RemoteConsumer that feeds the consumer the server builds for this
    connection. ``pid`` is the server's process.

    Both ends prove that they hold the same key before anything is unpickled: ``authkey``
    (bytes), else the bytes of the environment variable GILSTUDY_AUTHKEY; without either
    connect raises ValueError, unless ``insecure=True`` (for a server started with
    insecure=True: no key, and anyone who can reach either end can run code in it).
    ``allowed`` restricts what results may load (see gilstudy.wire.RestrictedUnpickler);
    ``max_frame`` bounds each frame this end reads (the server says what it reads).

    Raises OSError (ConnectionRefusedError...) if nothing listens there, TimeoutError if the
    server has not accepted the connection and finished the handshake within ``timeout``
    seconds (None: wait for ever), AuthenticationError if the server refuses our key or
    fails to prove its own, ProtocolError if the peer is not a gilstudy server, and
    CoprocessDied if it closes the connection before its HELLO.
    """
    authkey = _resolve_key("connect", authkey, insecure)
    options = wire.channel_options("connect", max_frame, allowed)
    _checks.results("connect", results)
    timeout = _checks.timeout("connect", timeout)
    host, port = address
    where = format_address(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"connect: {where} did not accept the connection within "
                           f"{timeout:g} s") from None
    channel = open_socket(sock, options, timeout)
    try:
        hello = wire.handshake(channel, pid=os.getpid(),
                               flags=wire.WANT_RESULTS if results is not None else 0,
                               authkey=authkey, accepting=False)
    except EOFError:
        channel.close()
        raise CoprocessDied(None, None, f"the server at {where} closed the connection before "
                                        "its HELLO") from None
    except AuthenticationError as exc:
        channel.close()
        raise AuthenticationError(f"connect: the server at {where} did not accept: {exc}") \
            from None
    except TimeoutError:
        channel.close()
        raise TimeoutError(f"connect: the server at {where} did not finish the handshake "
                           f"within {timeout:g} s") from None
    except BaseException:
        channel.close()
        raise
    sock.settimeout(None)
    link = _Link(channel, ServerConnection(hello.pid, where), results=results,
                 where=f"connection to {where}", expect_hello=False)
    return RemoteConsumer(link)


# -- Serving: a consumer per connection -----------------------------------------------------

class CoprocessServer:
    """Listens on a TCP address and runs a consumer, built by ``factory(*args)``, for each
    connection, in a thread of its own, speaking the framed protocol; serve() makes one.

    ``address`` is the ``(host, port)`` it listens on (the real port when asked for 0).
    serve_forever() blocks until close(), which another thread or a signal handler may
    call; close() stops accepting, drops open connections (their consumers are abandoned,
    unclosed, once their current item is handled) and waits for their threads. A
    connection whose peer fails the handshake (no key, a wrong key, not gilstudy, silent
    for CONNECT_TIMEOUT) or breaks the protocol later (a frame too long, truncated or
    refused by ``allowed``) is logged on the ``gilstudy.coprocess`` logger and dropped; the
    server goes on serving the others.
    """

    def __init__(self, address: tuple[str, int], factory: Callable, args: tuple = (), *,
                 authkey: bytes | None = None, insecure: bool = False, allowed=None,
                 max_frame: int = wire.MAX_FRAME):
        if not callable(factory):
            raise TypeError(f"serve: factory must be callable, got {factory!r}")
        self._authkey = _resolve_key("serve", authkey, insecure)
        self._options = wire.channel_options("serve", max_frame, allowed)
        self._factory = factory
        self._args = args
        self._listener = socket.create_server(address, family=family(address[0]))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        # Every connection thread not yet known to have ended: close() joins them all,
        # including those that have left _connections but not yet returned.
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"gilstudy-serve-{self.address[1]}")
        self._acceptor.start()

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    conn, peer = self._listener.accept()
                except OSError:
                    continue  # the peer gave up before we accepted (ECONNABORTED)
                thread = threading.Thread(target=self._handle, args=(conn, peer), daemon=True,
                                          name=f"gilstudy-serve-{self.address[1]}-conn")
                with self._lock:
                    if self._closing:
                        conn.close()
                        return
                    self._connections[thread] = conn
                    self._threads = {t for t in self._threads if t.is_alive()}
                    self._threads.add(thread)
                thread.start()

    def _handle(self, conn: socket.socket, peer) -> None:
        channel = None
        try:
            channel = open_socket(conn, self._options, CONNECT_TIMEOUT)
            hello = wire.handshake(channel, pid=os.getpid(), authkey=self._authkey,
                                   accepting=True)
            conn.settimeout(None)
            run_far_side(channel, lambda: self._factory(*self._args),
                         want_results=bool(hello.flags & wire.WANT_RESULTS))
        except AuthenticationError as exc:
            self._log("refused", peer, exc)
        except (ProtocolError, TimeoutError) as exc:
            self._log("dropped", peer, exc)
        except (PeerGone, EOFError, OSError):
            pass  # the client left
        finally:
            # Leave the table first: close() shuts down only sockets still in it, so it
            # never touches one closed here.
            with self._lock:
                self._connections.pop(threading.current_thread(), None)
            if channel is not None:
                channel.close()
            else:
                conn.close()

    def _log(self, what: str, peer, exc: BaseException) -> None:
        log_refusal("gilstudy serve on %s: %s a connection from %s: %s",
                    format_address(*self.address), what, format_address(*peer[:2]),
                    describe_refusal(exc))

    def serve_forever(self) -> None:
        """Block until close() (from another thread) or an exception such as
        KeyboardInterrupt; connections are served all the while."""
        self._closed.wait()

    def close(self) -> None:
        """Stop accepting, drop open connections, wait for their threads; idempotent."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
        if already:
            self._closed.wait()
            return
        self._wake_w.send(b"x")
        self._acceptor.join()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with self._lock:
            for conn in self._connections.values():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self._closed.set()

    def __enter__(self) -> "CoprocessServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "serving"
        return f"<CoprocessServer on {format_address(*self.address)}, {state}>"


def serve(address: tuple[str, int], factory: Callable, *args: Any,
          authkey: bytes | None = None, insecure: bool = False, allowed=None,
          max_frame: int = wire.MAX_FRAME) -> CoprocessServer:
    """Listen on ``address`` (``(host, port)``; port 0 picks a free one) and run the
    consumer ``factory(*args)`` for each connection made with connect(); return the
    running CoprocessServer at once (see it for stopping).

    Items arrive pickled, and unpickling runs code the sender chooses, so every client
    first proves that it holds the key: ``authkey`` (bytes), else the bytes of the
    environment variable GILSTUDY_AUTHKEY; without either serve raises ValueError.
    ``insecure=True`` serves without a key: anyone who can connect can then run code in
    this process. ``allowed`` (a set of "module.qualname" strings or a callable, see
    gilstudy.wire.RestrictedUnpickler) limits what items may load, for clients trusted with
    the key but not with code; ``max_frame`` bounds each frame a client sends.
    """
    return CoprocessServer(address, factory, args, authkey=authkey, insecure=insecure,
                           allowed=allowed, max_frame=max_frame)


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
    try:
        address = parse_address(args.address)
    except ValueError as exc:
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
        server = serve(address, factory, *args.args, insecure=args.insecure,
                       allowed=set(args.allow) if args.allow else None,
                       max_frame=args.max_frame)
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
    parser.set_defaults(run=_run_serve)
