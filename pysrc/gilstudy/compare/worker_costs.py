"""The start-up and memory table of `gilstudy compare`: what one worker costs before it does any
work, for a thread, a subinterpreter and a coprocess side by side, under each interpreter of
the run, measured with gilstudy.footprint (each kind in a fresh process) after the timing, so
that it neither disturbs the timed runs nor is disturbed by them.
"""

import subprocess
from dataclasses import asdict

from gilstudy.errors import InterpreterFailed
from gilstudy.footprint import KINDS, Footprint, footprint, format_footprints

__all__ = ["KINDS", "footprint_workers", "measure_all", "table_text", "to_dicts",
           "summary_line"]


def footprint_workers(counts: list[int], cores: int) -> int:
    """How many workers of each kind to start: the widest requested count within the
    usable cores (per-worker figures from more workers than cores would count waiting
    for a core as start-up), at least 1.

    >>> footprint_workers([1, 2, 4], 2), footprint_workers([4], 2)
    (2, 1)
    """
    return max([n for n in counts if n <= cores] or [1])


def measure_all(interpreters: list[tuple[str, str]], workers: int, kernel: str
                ) -> list[Footprint]:
    """Footprints of every kind under each ``(label, executable)`` interpreter, in that
    order, each kind's workers running ``kernel`` in pure Python. A kind that an
    interpreter cannot run (a subinterpreter before 3.14) comes back with its reason; so
    does a measurement that failed (its last words), rather than losing the whole
    comparison for one missing row. The ``python`` of each is the run's label for its
    interpreter."""
    found = []
    for label, executable in interpreters:
        for kind in KINDS:
            try:
                [item] = footprint((kind,), workers, executable, kernel, "python")
            except (InterpreterFailed, OSError, subprocess.SubprocessError) as exc:
                item = Footprint(kind, workers, label,
                                 unavailable=f"measuring failed: {exc}".splitlines()[0])
            found.append(Footprint(**{**asdict(item), "python": label}))
    return found


def table_text(footprints: list[Footprint], kernel: str) -> str:
    """The table, with a line saying what it measured."""
    return "\n".join([
        format_footprints(footprints),
        f"start-up: from the first start until every worker answered a first item of "
        f"{kernel}, each kind in a fresh process; RSS and PSS: memory the workers added, "
        "per worker (PSS splits pages shared between processes among them)"])


def to_dicts(footprints: list[Footprint]) -> list[dict]:
    """The JSON form: each Footprint's fields and its start-up per worker."""
    return [{"kind": f.kind, "interpreter": f.python, "workers": f.workers,
             "startup_s": f.startup_s, "startup_per_worker_s": f.startup_per_worker_s,
             "rss_bytes": f.rss_bytes, "pss_bytes": f.pss_bytes,
             "unavailable": f.unavailable} for f in footprints]


def summary_line(footprints: list[Footprint]) -> str | None:
    """One verdict sentence per interpreter: each kind's start-up and resident memory per
    worker, side by side; None when nothing was measured."""
    parts: dict[str, list[str]] = {}
    for f in footprints:
        if f.unavailable or f.startup_s is None:
            continue
        memory = "" if f.rss_bytes is None else f", {f.rss_bytes / (1 << 20):.1f} MiB"
        parts.setdefault(f.python, []).append(
            f"a {f.kind} {1000 * f.startup_per_worker_s:.1f} ms{memory}")
    if not parts:
        return None
    return ("Per worker (start-up, resident memory): " + "; ".join(
        f"@{label}: {', '.join(kinds)}" for label, kinds in parts.items()) + ".")
