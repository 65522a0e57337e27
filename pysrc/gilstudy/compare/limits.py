"""What `gilstudy compare` and `gilstudy breakeven` refuse before they run, beyond each
option's own type: values that would make a run absurd (a run that cannot end within a day,
more workers than a sane cap) unless ``--force`` is given, breakeven durations too short to
calibrate and a breakeven with nothing to compare; and what they do once the results exist
but cannot be written (the table is printed first, then one line says what was lost)."""

import os
from pathlib import Path
from typing import Callable, TextIO

from gilstudy.compare import registry
from gilstudy.compare.runner import default_workers

__all__ = ["MAX_REPEAT", "MAX_MIN_TIME_S", "MAX_RUN_S", "MIN_DURATION_S", "max_workers",
           "check", "write_outputs", "running_failure"]

# Past these a run is refused without --force: interleaved repeats, seconds per repeat, and
# the least a whole run would take (repeats x seconds x worker counts x models).
MAX_REPEAT = 1000
MAX_MIN_TIME_S = 3600.0
MAX_RUN_S = 24 * 3600.0

# The shortest work per item breakeven can calibrate a kernel or a function to: below it,
# even an item of size 1 takes longer.
MIN_DURATION_S = 1e-6


def max_workers() -> int:
    """The most workers a count may name without --force: 64 per core seen, at least 256."""
    return max(256, 64 * (os.cpu_count() or 1))


def check(args) -> None:
    """Refuse (ValueError, naming the option, the rule and the value) what makes a run
    absurd unless ``args.force``, and what breakeven cannot measure at all."""
    durations = getattr(args, "durations", None)
    if durations is not None:
        short = [d for d in durations if d < MIN_DURATION_S]
        if short:
            raise ValueError(f"--durations: each must be at least {MIN_DURATION_S:g} s (an item "
                             f"of size 1 takes about that long), got {short[0]:g}")
        chosen = registry.select(args.models)
        if all(model.max_workers == 1 for model in chosen):
            raise ValueError(f"--models: name at least one model besides the serial ones, "
                             f"which breakeven compares against; got {args.models!r}")
    if getattr(args, "force", False):
        return
    workers = args.workers or default_workers()
    models = len(registry.select(args.models))
    run_s = args.repeat * args.min_time * len(workers) * models
    for what, value, limit in (("--repeat", args.repeat, MAX_REPEAT),
                               ("--min-time", args.min_time, MAX_MIN_TIME_S),
                               ("--workers", max(workers, default=0), max_workers())):
        if value > limit:
            raise ValueError(f"{what} must be at most {limit:g} (or pass --force), got "
                             f"{value:g}")
    if run_s > MAX_RUN_S:
        raise ValueError(f"--repeat {args.repeat} x --min-time {args.min_time:g} s x "
                         f"{len(workers)} worker counts x {models} models would run "
                         f"for at least {run_s / 3600:.0f} hours, more than a day (pass "
                         "--force to run it anyway)")


def running_failure(prog: str, args, exc: Exception) -> str:
    """The one line for an exception that escaped the measurement: what raised, and for
    breakeven's --function, the likely cause."""
    message = f"the run failed: {type(exc).__name__}: {exc}"
    if prog.endswith("breakeven") and getattr(args, "function", None) and isinstance(
            exc, (KeyError, ValueError, ZeroDivisionError)):
        message += (f" (does the time of --function {args.function} grow with its size "
                    "argument, and does it run?)")
    return message


def write_outputs(prog: str, args, as_json: Callable[[], str], draw: Callable[[Path], Path],
                  out: TextIO, fail) -> int:
    """Write the JSON (the text ``as_json()`` returns) and the plot (``draw(path)``, which
    returns the path written) that ``args`` asks for, once the report is printed; each that
    cannot be written is said on ``out`` and by ``fail(prog, message, 1)``, whose status is
    returned; 0 when all were written."""
    status = 0
    for option, path, write in (("--json", args.json, lambda path: _write_json(as_json, path)),
                                ("--plot", args.plot, draw)):
        if path is None:
            continue
        try:
            written = write(path)
        except (OSError, RuntimeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            status = fail(prog, f"the results above were measured, but {option} "
                                f"{str(path)!r} could not be written: {reason}", 1)
            continue
        if option == "--json":
            print(f"\nJSON written to {written}", file=out)
        else:
            print(f"plot written to {written}", file=out)
    return status


def _write_json(as_json: Callable[[], str], path: Path) -> Path:
    Path(path).write_text(as_json() + "\n")
    return path
