"""Compare two commits on bench/bench_coprocess.py's stream, round-trip and start-up figures,
interleaved in one run, so that whatever else loads the machine falls on both alike.

Each commit gets a tree of its own (its files, exported with git archive once, under
--trees; no worktree is registered) and, in it, its own venv with that commit's gilstudy
built and installed (``make .venv/.installed-test``). Then
the benchmarks run in turns, one pytest session per commit and turn, the order flipped every
turn (A B, B A, A B...). Each commit runs its own copy of bench/bench_coprocess.py. The
table gives, per benchmark, each commit's median over the turns (items/s; seconds for
start-up), how far apart its turns were (the largest over the smallest), and the
candidate's ratio to the baseline (above 1: the candidate is faster). The stream through
multiprocessing.Queue runs no gilstudy code: its ratio is the control, what the machine
alone did to the figures.

    python3 tools/bench_interleaved.py                      # HEAD against 8187c36, 3 turns
    python3 tools/bench_interleaved.py --baseline 8187c36 --candidate issue22 --turns 5
    python3 tools/bench_interleaved.py --turns 9 --select "round_trip and socket"
    python3 tools/bench_interleaved.py --baseline 2706794 --script bench/stream_rate.py --turns 8

With --script, each turn runs that script (the candidate's copy, from this checkout) with
each commit's venv instead of a pytest session: it prints one JSON line of
{name: items/s}, and "cpus_idle_before_run". A script that old commits can run compares
a figure their own benchmarks never had (bench/stream_rate.py: issue 23's stream;
bench/short_pass.py: its short pass). A name ending in " ms" is a time (lower is better),
one ending in " x serial" a speedup.

Every session first waits up to a minute for idle CPUs (bench/conftest.py) and records
whether it got them: the table says how many sessions ran on a busy machine. Exit status 0,
or 2 with one line for a bad argument (an unknown commit), 1 when a build or a run failed.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
# The coprocess figures, and one control: multiprocessing.Queue's stream runs no gilstudy
# code, so its ratio shows how far the machine alone moved the figures.
BENCHMARKS = ("test_one_way_stream or test_round_trip_through_two_coprocesses "
              "or test_spawn_until_first_item_handled")


def _resolve(commit: str) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
                              cwd=REPO, check=True, capture_output=True,
                              text=True).stdout.strip()
    except subprocess.CalledProcessError:
        raise SystemExit(f"bench_interleaved: error: {commit!r} is not a commit of {REPO}") \
            from None


def _tree(sha: str, trees: pathlib.Path) -> pathlib.Path:
    """The files of ``sha``, exported if missing, with their venv built."""
    path = trees / sha[:12]
    if not (path / "Makefile").exists():
        path.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    print(f"building {sha[:12]} in {path} (make .venv/.installed-test)", flush=True)
    done = subprocess.run(["make", "-C", str(path), ".venv/.installed-test"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
        raise RuntimeError(f"building {sha[:12]} failed")
    return path


def _session(tree: pathlib.Path, out: pathlib.Path, select: str) -> dict:
    """One pytest session of the benchmarks ``select`` chooses (a pytest -k expression) in
    ``tree``; its pytest-benchmark JSON."""
    command = [str(tree / ".venv" / "bin" / "python"), "-m", "pytest",
               "bench/bench_coprocess.py", "-k", select, "-q", "-p", "no:cacheprovider",
               "--benchmark-only", f"--benchmark-json={out}"]
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"the benchmarks failed in {tree}")
    return json.loads(out.read_text())


def _script_run(tree: pathlib.Path, script: pathlib.Path) -> dict:
    """One run of ``script`` with ``tree``'s venv, as a report _figures() and _idle() read."""
    done = subprocess.run([str(tree / ".venv" / "bin" / "python"), str(script)], cwd=tree,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"{script.name} failed in {tree}")
    line = json.loads(done.stdout.strip().splitlines()[-1])
    idle = line.pop("cpus_idle_before_run", False)
    return {"benchmarks": [{"name": name, "extra_info": {"items_per_s": rate}}
                           for name, rate in line.items()],
            "machine_info": {"gilstudy": {"cpus_idle_before_run": idle}}}


def _figures(report: dict) -> dict[str, float]:
    """Benchmark name -> items/s, or for start-up (no items) seconds, from one session."""
    figures = {}
    for bench in report["benchmarks"]:
        rate = bench.get("extra_info", {}).get("items_per_s")
        figures[bench["name"]] = rate if rate is not None else bench["stats"]["median"]
    return figures


def _idle(report: dict) -> bool:
    return bool(report["machine_info"].get("gilstudy", {}).get("cpus_idle_before_run"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="8187c36", help="commit to compare against")
    parser.add_argument("--candidate", default="HEAD", help="commit to measure")
    parser.add_argument("--turns", type=int, default=3, help="sessions per commit")
    parser.add_argument("--select", default=BENCHMARKS,
                        help="the benchmarks, as a pytest -k expression (default: the stream, "
                             "round-trip and start-up figures)")
    parser.add_argument("--script", type=pathlib.Path,
                        help="run this script (a path in this checkout) with each commit's "
                             "venv instead of the pytest benchmarks")
    parser.add_argument("--trees", type=pathlib.Path,
                        default=pathlib.Path.home() / ".cache" / "gilstudy" / "bench-trees",
                        help="where the exported trees go")
    args = parser.parse_args(argv)
    if args.turns < 1:
        print(f"bench_interleaved: error: --turns must be >= 1, got {args.turns}",
              file=sys.stderr)
        return 2
    script = args.script.resolve() if args.script else None
    if script is not None and not script.is_file():
        print(f"bench_interleaved: error: --script must be a file, got {args.script}",
              file=sys.stderr)
        return 2
    try:
        shas = {"baseline": _resolve(args.baseline), "candidate": _resolve(args.candidate)}
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        trees = {role: _tree(sha, args.trees) for role, sha in shas.items()}
        runs: dict[str, list[dict]] = {"baseline": [], "candidate": []}
        busy = 0
        out = args.trees / f"interleaved-{os.getpid()}"
        out.mkdir(parents=True, exist_ok=True)
        for turn in range(args.turns):
            order = ("baseline", "candidate") if turn % 2 == 0 else ("candidate", "baseline")
            for role in order:
                print(f"turn {turn + 1}/{args.turns}: {role} {shas[role][:12]}", flush=True)
                if script is not None:
                    report = _script_run(trees[role], script)
                else:
                    report = _session(trees[role], out / f"{turn}-{role}.json", args.select)
                busy += not _idle(report)
                runs[role].append(_figures(report))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench_interleaved: {exc}", file=sys.stderr)
        return 1
    names = sorted(set().union(*runs["baseline"], *runs["candidate"]))
    print(f"\nbaseline {shas['baseline'][:12]} ({args.baseline}), candidate "
          f"{shas['candidate'][:12]} ({args.candidate}); {args.turns} turns each, "
          f"interleaved; {busy} of {2 * args.turns} sessions on a busy machine")
    print(f"{'benchmark':58} {'baseline':>12} {'spread':>6} {'candidate':>12} {'spread':>6} "
          f"{'ratio':>6}")
    for name in names:
        base_runs = [run[name] for run in runs["baseline"] if name in run]
        cand_runs = [run[name] for run in runs["candidate"] if name in run]
        base, cand = statistics.median(base_runs), statistics.median(cand_runs)
        start_up = "spawn_until" in name
        lower_is_better = start_up or name.endswith(" ms")
        unit = "s" if start_up else "" if lower_is_better or name.endswith(" x serial") else "/s"
        # Above 1: the candidate is faster (more items a second, fewer seconds to start,
        # fewer ms a pass, a larger speedup).
        ratio = base / cand if lower_is_better else cand / base
        label = f"{name} (control)" if "multiprocessing" in name else name
        print(f"{label:58} {base:>10.4g}{unit:>2} {max(base_runs) / min(base_runs):>5.2f}x "
              f"{cand:>10.4g}{unit:>2} {max(cand_runs) / min(cand_runs):>5.2f}x {ratio:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
