"""How much memory one hostile frame makes a restricted receiver hold: the growth of the
peak resident set (ru_maxrss) while a fresh interpreter loads each attack of issue 21, with
today's limits and, for the pickle attack, with the stock pure-Python unpickler behind the
same allowlist (what restricted loading was before). Memory figures do not depend on load.

    .venv/bin/python bench/frame_memory.py [--mib 8]
"""

import argparse
import json
import subprocess
import sys

# Each attack runs in a child of its own, so one's peak does not hide the next's.
CHILD = r"""
import io, json, os, pickle, resource, struct, sys
from gilstudy import wire
from gilstudy.errors import ProtocolError

attack, size = sys.argv[1], int(sys.argv[2])


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


PICKLES = {"empty-dicts": b"}", "MEMOIZE": b"\x94", "MARK": b"(", "TUPLE1": b"\x85"}
if attack.split(",")[0] in PICKLES:
    data = b"\x80\x05N" + PICKLES[attack.split(",")[0]] * size + b"."
else:
    if attack.startswith("2**20"):
        count, sizes = size // 8, bytes(8 * (size // 8))     # zero-size buffers
    else:
        count = wire.MAX_BUFFERS                              # the most, one byte each
        sizes = struct.pack(f"!{count}Q", *[1] * count) + bytes(count)
    frame = (wire.HEADER.pack(wire.ITEMS_OOB, 4 + len(sizes) + 1) + struct.pack("!I", count)
             + sizes + b".")
    read_fd, write_fd = os.pipe()
    channel = wire.Channel.from_fds(read_fd, os.open(os.devnull, os.O_WRONLY),
                                    max_frame=1 << 30)
    import threading
    threading.Thread(target=lambda: (os.write(write_fd, frame), os.close(write_fd)),
                     daemon=True).start()
before = peak()
outcome = "loaded"
try:
    if attack == "empty-dicts, stock unpickler":
        pickle._Unpickler(io.BytesIO(data)).load()
    elif attack in PICKLES:
        wire.restricted_loads(set())(data)
    else:
        channel.read_frame()
except (ProtocolError, pickle.UnpicklingError) as exc:
    outcome = "refused: " + str(exc)[:70]
print(json.dumps({"growth": peak() - before, "outcome": outcome}))
"""

ATTACKS = ("empty-dicts, stock unpickler", "empty-dicts", "MEMOIZE", "MARK", "TUPLE1",
           "2**20 out-of-band buffers", "MAX_BUFFERS one-byte buffers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=8, help="frame size in MiB (default 8)")
    args = parser.parse_args()
    size = args.mib << 20
    print(f"frame of {args.mib} MiB; growth of the peak RSS while one frame is loaded")
    for attack in ATTACKS:
        run = subprocess.run([sys.executable, "-c", CHILD, attack, str(size)],
                             capture_output=True, text=True, timeout=600, check=True)
        result = json.loads(run.stdout)
        growth = result["growth"]
        print(f"  {attack:30s} {growth / (1 << 20):8.1f} MiB  {growth / size:5.1f}x   "
              f"{result['outcome']}")


if __name__ == "__main__":
    main()
