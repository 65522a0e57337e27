"""Issue 23's short pass, as one script that any commit's gilstudy runs (spawn(), Collect
and start_runners, which every commit since the runner split has): 80 items of about
0.15 ms of pure Python each (12 ms of serial work), through a Dispatch over 2 coprocesses
with the results back, against the same items run in turn in this thread. Each repeat
runs passes back to back until they add up to 0.3 s, as `gilstudy compare` does; the
repeats alternate between the two, and the figure is the median pass of each. Every
pass's answer is checked. Prints one JSON line (what tools/bench_interleaved.py --script
reads): the speedup, and each median pass in ms.

    .venv/bin/python bench/short_pass.py
    python3 tools/bench_interleaved.py --baseline a4f4cf1 --script bench/short_pass.py --turns 6

The target (issue 23): at least 1.7x on the 2-core machine. `gilstudy compare --function`
on a function of this size shows the same figure; bench/short_pass.py runs under older
commits too.
"""

import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _bench_consumers import Spin, spin  # noqa: E402
from gilstudy.consumers import Collect  # noqa: E402
from gilstudy.coprocess import spawn  # noqa: E402
from gilstudy.dispatch import start_runners  # noqa: E402

ITEMS = 80
STEPS = 2_600
REPEATS = 7
MIN_TIME_S = 0.3
TIMEOUT = 60


def _idle() -> bool:
    from gilstudy import machine
    return bool(machine.wait_for_idle_cpus(timeout_s=60.0).idle)


def main() -> int:
    items = [(index, index + 1, STEPS) for index in range(ITEMS)]
    expected = sorted(Spin().send(item) for item in items)
    results = Collect()
    fan = start_runners(lambda index: spawn(Spin, results=results), 2)
    idle = _idle()
    try:
        for worker in fan.consumers:
            worker.send((-1, 0, 1))
            worker.flush()
        results.take(2, timeout=TIMEOUT)

        def serial() -> None:
            answers = sorted((index, spin(seed, steps)) for index, seed, steps in items)
            assert answers == expected

        def parallel() -> None:
            for item in items:
                fan.send(item)
            for worker in fan.consumers:
                worker.flush()
            answers = sorted(results.take(ITEMS, timeout=TIMEOUT))
            if answers != expected:
                raise SystemExit("short_pass: the coprocesses' answers differ from serial's")

        passes = {serial: [], parallel: []}
        for _ in range(REPEATS):
            for run in passes:
                spent = 0.0
                repeat = []
                while spent < MIN_TIME_S:
                    started = time.perf_counter()
                    run()
                    repeat.append(time.perf_counter() - started)
                    spent += repeat[-1]
                passes[run].append(spent / len(repeat))
    finally:
        fan.close()
    serial_s = statistics.median(passes[serial])
    parallel_s = statistics.median(passes[parallel])
    print(json.dumps({"short pass of 80 items of 0.15 ms, 2 coprocesses, x serial":
                      round(serial_s / parallel_s, 3),
                      "short pass: serial ms": round(serial_s * 1e3, 2),
                      "short pass: 2 coprocesses ms": round(parallel_s * 1e3, 2),
                      "cpus_idle_before_run": idle}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
