"""The small-item stream of issue 23, as one script that any commit's gilstudy runs (it uses
only spawn() and Collect, which every commit since 2706794 has): 1,000,000 ``("x", i)``
items to a consumer that counts them, over a pipe, timed from the first send() to the end
of close(), best of 3 (each with a fresh coprocess, started and answering before the
clock starts). The count is checked before a figure is kept. Prints one JSON line,
{name: items/s}, which tools/bench_interleaved.py --script reads:

    .venv/bin/python bench/stream_rate.py
    python3 tools/bench_interleaved.py --baseline 2706794 --script bench/stream_rate.py --turns 8
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench_consumers import Tally  # noqa: E402
from gilstudy.consumers import Collect  # noqa: E402
from gilstudy.coprocess import spawn  # noqa: E402

ITEMS = 1_000_000
REPEATS = 3


def _idle() -> bool:
    from gilstudy import machine
    return bool(machine.wait_for_idle_cpus(timeout_s=60.0).idle)


def one_stream(items: list) -> float:
    """Seconds from the first send() to the end of close(); the count checked."""
    results = Collect()
    consumer = spawn(Tally, transport="pipe", results=results)
    consumer.send(("x", -1))
    consumer.flush()
    while consumer.pending:
        time.sleep(0.001)
    send = consumer.send
    started = time.perf_counter()
    for item in items:
        send(item)
    consumer.close()
    seconds = time.perf_counter() - started
    if results.items != [len(items) + 1]:
        raise SystemExit(f"stream_rate: the consumer counted {results.items}, "
                         f"not [{len(items) + 1}]")
    return seconds


def main() -> int:
    items = [("x", i) for i in range(ITEMS)]
    idle = _idle()
    best = min(one_stream(items) for _ in range(REPEATS))
    print(json.dumps({f"pipe stream, {ITEMS:,} ('x', i) items, best of {REPEATS}":
                      round(ITEMS / best), "cpus_idle_before_run": idle}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
