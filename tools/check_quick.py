#!/usr/bin/env python3
"""Run the default `gilstudy compare` (no options: the quick set at 1 worker and the usable
cores) several times, and print per run its wall time, its answer, and the 2-worker over
1-worker speedup of every compiled row (recomputed from the raw seconds, as
tools/check_scaling.py does); exit 1 unless every run took at most --max-seconds and
every compiled row reached --min in every run. The check of the quick default, on an idle
machine:

    .venv/bin/python tools/check_quick.py --runs 5

Each run's JSON is kept in --keep (default results/check-quick/run-N.json).
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("check_scaling", TOOLS / "check_scaling.py")
check_scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_scaling)


def compiled_ratios(document: dict, workers: int = 2) -> dict[str, float]:
    """{model: median at 1 worker / median at ``workers``} for the rows that do not run
    the Python implementation."""
    compiled = {r["model"] for r in document["rows"] if r["impl"] != "python"}
    return {model: ratio for model, ratio in check_scaling.scaling(document, workers).items()
            if model.partition("@")[0] in compiled}


def one_run(index: int, keep: Path, extra: list[str]) -> tuple[float, dict]:
    """Run the default compare once; return its wall seconds and its JSON document."""
    path = keep / f"run-{index}.json"
    command = [sys.executable, "-m", "gilstudy", "compare", "--quiet", "--json", str(path),
               *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"check_quick: run {index} failed ({done.returncode}): "
                         f"{done.stderr.strip()}")
    return seconds, json.loads(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--min", type=float, default=1.75,
                        help="least 2-over-1 speedup of each compiled row (default 1.75)")
    parser.add_argument("--max-seconds", type=float, default=90.0,
                        help="most wall seconds per run (default 90)")
    parser.add_argument("--keep", type=Path, default=Path("results/check-quick"),
                        help="folder for each run's JSON (default results/check-quick)")
    parser.add_argument("extra", nargs="*",
                        help="more compare options, after --, e.g. -- --repeat 7")
    args = parser.parse_args(argv)
    args.keep.mkdir(parents=True, exist_ok=True)
    failures = 0
    for index in range(1, args.runs + 1):
        seconds, document = one_run(index, args.keep, args.extra)
        ratios = compiled_ratios(document)
        answer = document["answer"]
        low = [m for m, r in ratios.items() if r < args.min]
        slow = seconds > args.max_seconds
        failures += bool(low or slow)
        over = f" (over {args.max_seconds:g} s)" if slow else ""
        print(f"run {index}: {seconds:.1f} s{over}; "
              + ", ".join(f"{m} {r:.2f}x" for m, r in ratios.items())
              + (f"  BELOW {args.min}: {', '.join(low)}" if low else ""))
        print(f"  answer: {answer['model']} w{answer['workers']} "
              f"{answer['speedup_vs_serial']:.2f}x (spread {100 * answer['spread']:.0f}%)"
              f"{', ties ' + ', '.join(answer['ties']) if answer['ties'] else ''}; "
              f"{document['environment']['idle_check']['text']}; "
              f"{document['environment']['outside_load']['text']}")
    print(f"{args.runs - failures} of {args.runs} runs within {args.max_seconds:g} s with every "
          f"compiled row at least {args.min:g}x at 2 workers over 1")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
