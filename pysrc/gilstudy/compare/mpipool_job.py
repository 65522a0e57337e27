"""Rank 0 of the MPI job that the mpipool-* compare models launch: `mpiexec -n N+1 python -m
mpi4py.futures -m gilstudy.compare.mpipool_job HOST PORT`. It connects back to the compare
process, proves it holds the job's key (read from standard input, which mpiexec hands to
rank 0), and runs each list of items it is sent through an MPIPoolExecutor on the other ranks.
"""

import hmac
import socket
import sys
from multiprocessing.connection import Connection

__all__ = ["CHALLENGE_BYTES", "prove", "main"]

# Random bytes each side sends the other to answer with an HMAC of them.
CHALLENGE_BYTES = 32


def prove(link: Connection, key: bytes, challenge: bytes, timeout: float) -> None:
    """Both halves of the mutual proof, seen from one end: send ``challenge``, answer the
    peer's, check the peer's answer to ours, nothing unpickled before. Raises
    PermissionError when the peer's answer is wrong (it does not hold ``key``),
    TimeoutError when it says nothing for ``timeout`` seconds, OSError when it sends more
    than a proof holds, EOFError when it hangs up."""

    def receive() -> bytes:
        if not link.poll(timeout):
            raise TimeoutError(f"the peer sent nothing for {timeout:g} s during the proof")
        return link.recv_bytes(64)

    link.send_bytes(challenge)
    theirs = receive()
    link.send_bytes(hmac.new(key, theirs, "sha256").digest())
    answer = receive()
    if not hmac.compare_digest(answer, hmac.new(key, challenge, "sha256").digest()):
        raise PermissionError("the peer does not hold the MPI pool job's key")


def main(argv: list[str]) -> int:
    """Serve the compare process at ``argv[1]:argv[2]``: first the consumer's ``(factory,
    args)``, then lists of items, each answered with ``("ok", results in item order)`` or
    ``("error", exception)``; None ends it. What the items' consumer raises travels back
    as the exception (as its text when it cannot be pickled)."""
    import os

    from mpi4py.futures import MPIPoolExecutor

    host, port = argv[1], int(argv[2])
    key = bytes.fromhex(sys.stdin.readline().strip())
    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(None)
    with Connection(sock.detach()) as link:
        prove(link, key, os.urandom(CHALLENGE_BYTES), timeout=30.0)
        factory, args = link.recv()
        consumer = factory(*args)
        with MPIPoolExecutor() as executor:
            while (items := link.recv()) is not None:
                try:
                    link.send(("ok", list(executor.map(consumer.send, items))))
                except Exception as exc:
                    try:
                        link.send(("error", exc))
                    except Exception:
                        link.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
