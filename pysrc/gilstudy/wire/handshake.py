"""Opening a channel: the HELLO each end sends, and the handshake, with an HMAC
challenge-response when the ends share a key. Nothing from the peer is unpickled before it
completes."""

import os

from gilstudy import _checks
from gilstudy.errors import AuthenticationError, ProtocolError
from gilstudy.wire.frames import (AUTHENTICATE, HELLO, HELLO_BODY, KIND_NAMES, MAGIC, NONCE,
                                  NONCE_SIZE, PROOF, PROOF_SIZE, VERSION, Hello)

__all__ = ["send_hello", "read_hello", "handshake", "proof"]


def send_hello(channel, pid: int, flags: int = 0) -> None:
    """Open a channel without authentication (pipes and FIFOs to our own child, sockets
    with insecure=True): tell the peer who we are and the largest frame we read. Both ends
    send a HELLO, then read the peer's with read_hello()."""
    channel.write_frame(HELLO, _hello_body(channel, pid, flags))


def _hello_body(channel, pid: int, flags: int) -> bytes:
    return HELLO_BODY.pack(MAGIC, VERSION, flags, pid, channel.max_frame)


def read_hello(channel) -> Hello:
    """Read the peer's HELLO and take its frame limit as the channel's peer_max_frame.
    Raises ProtocolError if the peer is not a gilstudy end of this wire version, EOFError
    if it closed the channel first."""
    kind, payload = channel.read_frame(max_length=HELLO_BODY.size)
    if kind != HELLO or len(payload) != HELLO_BODY.size:
        raise ProtocolError(f"expected a HELLO frame of {HELLO_BODY.size} bytes, got "
                            f"{KIND_NAMES[kind]} of {len(payload)} bytes")
    magic, version, flags, pid, max_frame = HELLO_BODY.unpack(payload)
    if magic != MAGIC:
        raise ProtocolError(f"the peer is not a gilstudy coprocess (magic {magic!r})")
    if version != VERSION:
        raise ProtocolError(f"the peer speaks gilstudy wire version {version}, this end "
                            f"speaks {VERSION}; run the same gilstudy on both ends")
    if max_frame < _checks.MIN_FRAME:
        raise ProtocolError(f"the peer announces a frame limit of {max_frame} bytes; the "
                            f"least is {_checks.MIN_FRAME}")
    channel.peer_max_frame = max_frame
    return Hello(pid, flags, max_frame)


# What each end's proof starts with: the role binds a proof to one direction, so neither
# end's proof can be sent back to it as the other's.
_PROOF_LABELS = {False: b"gilstudy wire 2, connecting end\n",
                 True: b"gilstudy wire 2, accepting end\n"}


def proof(authkey: bytes, accepting: bool, connecting_nonce: bytes,
          accepting_nonce: bytes) -> bytes:
    """The PROOF an end sends: HMAC-SHA256 keyed with ``authkey`` over its role label
    (``b"gilstudy wire 2, connecting end\\n"`` or ``b"gilstudy wire 2, accepting end\\n"``),
    then the connecting end's nonce, then the accepting end's (32 bytes each)."""
    import hmac

    message = _PROOF_LABELS[accepting] + connecting_nonce + accepting_nonce
    return hmac.new(authkey, message, "sha256").digest()


def handshake(channel, *, pid: int, flags: int = 0, authkey: bytes | None = None,
              accepting: bool) -> Hello:
    """Open a channel; return the peer's Hello. ``accepting`` is true for the end that
    accepted the connection (serve(), spawn()'s parent), false for the end that made it.

    Without ``authkey``: each end sends HELLO and reads the peer's. With it, each end
    proves to the other that it holds the same key, before anything is unpickled::

        connecting end                                 accepting end
        HELLO (flags | AUTHENTICATE), NONCE n_c   ->
                                                  <-   HELLO (flags | AUTHENTICATE), NONCE n_a
        PROOF proof(key, False, n_c, n_a)         ->   checked with hmac.compare_digest;
                                                       on failure the connection is closed
                                                  <-   PROOF proof(key, True, n_c, n_a)
        checked with hmac.compare_digest

    Nonces are NONCE_SIZE bytes from os.urandom, fresh for every handshake, so a recorded
    handshake replayed to either end fails. Raises AuthenticationError when the peer fails
    its proof, closes the channel where a proof was due, or does not authenticate while
    this end does (or the reverse); ProtocolError when the peer is not a gilstudy end;
    EOFError when it closed before its HELLO.
    """
    if authkey is None:
        send_hello(channel, pid, flags)
        hello = read_hello(channel)
        if hello.flags & AUTHENTICATE:
            raise AuthenticationError("the peer requires a key and this end has none; pass "
                                      "authkey= or set GILSTUDY_AUTHKEY")
        return hello
    mine = os.urandom(NONCE_SIZE)
    channel.write_frames([(HELLO, _hello_body(channel, pid, flags | AUTHENTICATE)),
                          (NONCE, mine)])
    hello = read_hello(channel)
    if not hello.flags & AUTHENTICATE:
        raise AuthenticationError("the peer does not authenticate (it runs with "
                                  "insecure=True) and this end has a key")
    kind, theirs = channel.read_frame(max_length=NONCE_SIZE)
    if kind != NONCE or len(theirs) != NONCE_SIZE:
        raise AuthenticationError(f"expected a NONCE frame of {NONCE_SIZE} bytes, got "
                                  f"{KIND_NAMES[kind]} of {len(theirs)} bytes")
    nonces = (theirs, mine) if accepting else (mine, theirs)
    if accepting:
        _check_proof(channel, proof(authkey, False, *nonces))
        channel.write_frame(PROOF, proof(authkey, True, *nonces))
    else:
        channel.write_frame(PROOF, proof(authkey, False, *nonces))
        _check_proof(channel, proof(authkey, True, *nonces))
    return hello


def _check_proof(channel, expected: bytes) -> None:
    import hmac

    try:
        kind, answer = channel.read_frame(max_length=PROOF_SIZE)
    except (EOFError, ConnectionResetError):
        raise AuthenticationError("the peer closed the connection instead of proving that "
                                  "it holds the key (a different key?)") from None
    if kind != PROOF or not hmac.compare_digest(answer, expected):
        raise AuthenticationError("the peer failed to prove that it holds the key")


