#!/usr/bin/env python3
# Recompute each model's speedup at N workers over its own 1 worker from a `gilstudy compare
# --json` document (the medians of the raw per-pass seconds, not the stored ratios), print
# them, and exit 1 if a model named with --models is below --min: the check of the targets.
#
#     python tools/check_scaling.py results/compare.json \
#         --models threads-cython,coprocess-cython,prange-cython --min 1.8

import argparse
import json
import statistics
import sys


def scaling(document: dict, workers: int) -> dict[str, float]:
    """{model@interpreter: median seconds at 1 worker / median seconds at ``workers``}."""
    medians = {(r["model"], r["interpreter"], r["workers"]): statistics.median(r["work_s"])
               for r in document["rows"]}
    several = len(document["environment"]["interpreters"]) > 1
    return {(f"{model}@{label}" if several else model): medians[(model, label, 1)] / seconds
            for (model, label, n), seconds in medians.items()
            if n == workers and (model, label, 1) in medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json", help="a gilstudy compare --json document")
    parser.add_argument("--workers", type=int, default=2, help="worker count (default 2)")
    parser.add_argument("--models", default="", help="comma-separated models to hold to --min")
    parser.add_argument("--min", type=float, default=1.8, help="least speedup (default 1.8)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        document = json.load(f)
    found = scaling(document, args.workers)
    wanted = [m for m in args.models.split(",") if m]
    missing = [m for m in wanted if m not in found]
    if missing:
        print(f"check_scaling: no {args.workers}-worker and 1-worker rows for "
              f"{', '.join(missing)} in {args.json}", file=sys.stderr)
        return 2
    failed = []
    for model, speedup in found.items():
        held = model in wanted
        verdict = ("ok" if speedup >= args.min else "BELOW") if held else ""
        print(f"{model:24} {args.workers} workers / 1 worker: {speedup:5.2f}x  {verdict}".rstrip())
        if held and speedup < args.min:
            failed.append(model)
    outside = document["environment"].get("outside_load", {}).get("text")
    if outside:
        print(outside)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
