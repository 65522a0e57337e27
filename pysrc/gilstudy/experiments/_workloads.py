"""The experiments' workloads as one self-contained script, run by every interpreter under
test as `PYTHON -c <this file> EXPERIMENT OPTIONS_JSON`: only the standard library, and only
syntax that CPython 2.7 accepts too, so that any CPython from 2.7 on runs it with nothing
installed. It prints its measurements as one JSON line after MARK; gilstudy reads the rest.
"""

import json
import platform
import sys
import sysconfig
import threading
import time

__all__ = ["MARK", "RACE_VARIANTS", "LOADS", "interpreter_facts", "race", "convoy",
           "count_primes", "main"]

MARK = "gilstudy-workload "

# Only reached if a thread hangs; the parent has its own, longer, deadline.
TIMEOUT = 600.0

try:
    range = xrange  # noqa: F821 (Python 2: a lazy range, not a list of n ints)
except NameError:
    pass

# Wall-clock timer: perf_counter from 3.3 on, time.time (microseconds on Linux) before.
timer = getattr(time, "perf_counter", time.time)


def interpreter_facts():
    """What this interpreter is, as the report labels it: version, build, GIL state and the
    knob that decides how often the GIL changes hands (the switch interval in seconds from
    3.2 on, the check interval in bytecodes before)."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    facts = {
        "version": list(sys.version_info[:3]),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if is_gil_enabled is None else bool(is_gil_enabled()),
        "platform": platform.platform(),
        "switch_interval_s": None,
        "check_interval": None,
    }
    if hasattr(sys, "getswitchinterval"):
        facts["switch_interval_s"] = sys.getswitchinterval()
    else:
        facts["check_interval"] = sys.getcheckinterval()
    return facts


def _run_together(targets, name):
    """Run each callable in ``targets`` in a thread of its own, released together (each
    thread waits until all have started, as a barrier would; Python 2 has none), and return
    the seconds from the release until the last one finished. Raises RuntimeError if a
    thread is still running after TIMEOUT."""
    ready = [threading.Event() for _ in targets]
    go = threading.Event()

    def body(index):
        ready[index].set()
        go.wait(TIMEOUT)
        targets[index]()

    threads = [threading.Thread(target=body, args=(i,), name="%s-%d" % (name, i))
               for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for event in ready:
        event.wait(TIMEOUT)
    start = timer()
    go.set()
    for thread in threads:
        thread.join(TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("thread %s still running after %d s" % (thread.name, TIMEOUT))
    return timer() - start


# ---- the race: two threads update one module global ---------------------------------------

# The shared state. A module global on purpose: the classic demonstration is `x += 1` on one.
shared = 0
lock = threading.Lock()


def _add(n):
    global shared
    for _ in range(n):
        shared += 1


def _subtract(n):
    global shared
    for _ in range(n):
        shared -= 1


def _add_locked(n):
    global shared
    for _ in range(n):
        with lock:
            shared += 1


def _subtract_locked(n):
    global shared
    for _ in range(n):
        with lock:
            shared -= 1


def _tally(sign):
    def count(n):
        global shared
        tally = 0
        for _ in range(n):
            tally += sign
        with lock:
            shared += tally
    return count


# Each variant's two threads; gilstudy.experiments.race describes them and knows the answer.
RACE_VARIANTS = {
    "unlocked": (_add, _subtract),
    "unlocked_add_add": (_add, _add),
    "locked": (_add_locked, _subtract_locked),
    "tally": (_tally(1), _tally(-1)),
}


def race(n, repeat, variants, progress):
    """Run each variant named in ``variants`` ``repeat`` times, interleaved (each round runs
    every variant once), with ``n`` updates per thread; return one {variant, final, seconds}
    per run, in the order run."""
    global shared
    runs = []
    for round_ in range(repeat):
        for name in variants:
            shared = 0
            workers = RACE_VARIANTS[name]
            seconds = _run_together([lambda w=w: w(n) for w in workers], "race-" + name)
            runs.append({"variant": name, "final": shared, "seconds": seconds})
            progress("round %d/%d %s: final %d, %.2f s" % (round_ + 1, repeat, name, shared,
                                                          seconds))
    return runs


# ---- the convoy: an I/O thread beside a CPU-bound thread ----------------------------------

# The pure-Python kernel's prime test, repeated here on purpose: this script may import
# nothing of gilstudy, since the interpreter running it may not have it (or be 2.7).
def _is_prime(p):
    if p < 2:
        return False
    if p < 4:
        return True
    if p % 2 == 0:
        return False
    d = 3
    while d <= p // d:
        if p % d == 0:
            return False
        d += 2
    return True


def count_primes(lo, hi):
    """The primes p with lo <= p < hi, by trial division: gilstudy.kernels.python's
    count_primes, the same loop, without its argument checks (gilstudy passes good ones).
    A copy, because this script runs where gilstudy is not installed; a test checks that
    the two agree."""
    count = 0
    for p in range(lo, hi):
        if _is_prime(p):
            count += 1
    return count


def _compiled_count_primes():
    """gilstudy's Cython count_primes, which releases the GIL, where it imports: returns
    (the function, None), or (None, why not) where gilstudy or its extension is missing."""
    try:
        from gilstudy.kernels import cython
    except Exception as exc:  # any failure to import means: not available here
        return None, "%s: %s" % (type(exc).__name__, exc)
    return cython.count_primes, None


# What the CPU thread may run: a kernel by name, found when the load is measured.
LOADS = {
    "python": lambda: (count_primes, None),
    "cython": _compiled_count_primes,
}


def _measure_load(kernel, args, seconds, interval_s):
    """The I/O thread sleeps ``interval_s`` and notes how late it woke, in a loop, for
    ``seconds``, while the CPU thread calls ``kernel(*args)`` over and over (or waits, when
    ``kernel`` is None). Returns (latencies in seconds, kernel calls completed)."""
    stop = threading.Event()
    calls = [0]
    latencies = []

    def cpu():
        if kernel is None:
            stop.wait(TIMEOUT)
            return
        while not stop.is_set():
            kernel(*args)
            calls[0] += 1

    def io():
        try:
            end = timer() + seconds
            while True:
                due = timer() + interval_s
                time.sleep(interval_s)
                # Running this line at all needs the interpreter (the GIL, where there is
                # one): the latency is the time from the wake-up being due to running.
                now = timer()
                latencies.append(now - due)
                if now >= end:
                    break
        finally:
            stop.set()

    _run_together([cpu, io], "convoy")
    return latencies, calls[0]


def convoy(seconds, interval_s, loads, progress):
    """Measure the I/O thread beside each load of ``loads``, a list of [name, arguments]:
    'none' (the CPU thread idles), or a name of LOADS and the arguments of one call. Returns
    one {load, latencies, kernel_calls, seconds, unavailable} per load, where
    ``unavailable`` says why a load whose kernel does not import here was not run."""
    measured = []
    for name, args in loads:
        kernel, why_not = (None, None) if name == "none" else LOADS[name]()
        one = {"load": name, "latencies": [], "kernel_calls": 0, "seconds": 0.0,
               "unavailable": why_not}
        if why_not is None:
            start = timer()
            one["latencies"], one["kernel_calls"] = _measure_load(kernel, args or (),
                                                                  seconds, interval_s)
            one["seconds"] = timer() - start
            progress("%s: %d responses" % (name, len(one["latencies"])))
        else:
            progress("%s: not run (%s)" % (name, why_not))
        measured.append(one)
    return measured


def main(argv):
    """``EXPERIMENT OPTIONS_JSON``: run the workload with those options and print MARK and
    one JSON object, {"facts": interpreter_facts(), "results": ...}. Progress lines go to
    stderr when the options ask for them. Exit status 2 on unknown arguments."""
    if len(argv) != 2 or argv[0] not in ("race", "convoy"):
        sys.stderr.write("usage: PYTHON -c SCRIPT race|convoy OPTIONS_JSON\n")
        return 2
    experiment, options = argv[0], json.loads(argv[1])
    show = options.pop("progress", False)

    def progress(line):
        if show:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    results = (race if experiment == "race" else convoy)(progress=progress, **options)
    sys.stdout.write(MARK + json.dumps({"facts": interpreter_facts(), "results": results})
                     + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
