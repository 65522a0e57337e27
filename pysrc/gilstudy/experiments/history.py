"""The history table: the race and the convoy under many interpreters (2.7 to 3.13t), one row
per interpreter, from the JSON that `gilstudy experiment race|convoy --python all --json`
wrote. `gilstudy experiment history RACE.json CONVOY.json` prints it as markdown.
"""

import argparse
import json
import sys

from gilstudy.cli import add_command
from gilstudy.experiments.convoy import ConvoyResult
from gilstudy.experiments.race import RaceResult

__all__ = ["history_table", "read_results", "add_subcommand"]


def _cell(values: list[str]) -> str:
    return ", ".join(values) if values else "-"


def history_table(races: list[RaceResult], convoys: list[ConvoyResult]) -> str:
    """A markdown table with one row per interpreter (matched by executable and version;
    in the order of ``races``, then convoys with no race): how the GIL is handed over, the
    final values of the unlocked races, the updates lost when both threads add, and the I/O
    thread's median latency beside each CPU load, with its responses beside pure Python."""
    header = ("| interpreter | GIL handed over | race: final of x += 1 \\| x -= 1 (0 expected) "
              "| race: lost of x += 1 \\| x += 1 | convoy: p50 ms, CPU thread idle "
              "| p50 ms beside pure Python | p50 ms beside Cython | responses beside pure "
              "Python, of idle |")
    rows = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    convoy_of = {(c.executable, c.version): c for c in convoys}
    raced = {(r.executable, r.version) for r in races}
    for result in [*races, *(c for c in convoys if (c.executable, c.version) not in raced)]:
        race = result if isinstance(result, RaceResult) else None
        convoy = convoy_of.get((result.executable, result.version))
        cells = [result.label, result.gil_handover]
        cells += ([_cell([f"{r.final:,}" for r in race.runs_of("unlocked")]),
                   _cell([f"{r.lost:,}" for r in race.runs_of("unlocked_add_add")])]
                  if race else ["-", "-"])
        if convoy:
            loads = {one.load: one for one in convoy.loads}
            cells += ["-" if loads[name].p50_ms is None else f"{loads[name].p50_ms:.3f}"
                      for name in ("none", "python", "cython")]
            cells.append(f"{loads['python'].responses} of {loads['none'].responses}")
        else:
            cells += ["-"] * 4
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def read_results(path: str, result_type: type, experiment: str) -> list:
    """The results in the JSON document at ``path`` that `gilstudy experiment EXPERIMENT
    --json` wrote. Raises ValueError naming the file when it cannot be read or is not such
    a document."""
    try:
        with open(path) as f:
            document = json.load(f)
        if not isinstance(document, dict) or document.get("experiment") != experiment:
            raise ValueError(f"it holds no {experiment} results")
        return [result_type.from_dict(one) for one in document["results"]]
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise ValueError(f"{path}: is not the JSON of gilstudy experiment {experiment} "
                         f"({exc})") from None


def _command(args: argparse.Namespace) -> int:
    try:
        races = read_results(args.race, RaceResult, "race")
        convoys = read_results(args.convoy, ConvoyResult, "convoy")
    except ValueError as exc:
        print(f"gilstudy experiment history: error: {exc}", file=sys.stderr)
        return 2
    print(history_table(races, convoys))
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy experiment history`` on the experiments' subparsers."""
    parser = add_command(
        subparsers, "history", help="one table of race and convoy results, a row per interpreter",
        description="Print the race and the convoy as one markdown table with one row per "
                    "interpreter, from the JSON that gilstudy experiment race and convoy "
                    "wrote (for instance with --python all --json FILE).")
    parser.add_argument("race", metavar="RACE.json", help="what `experiment race --json` wrote")
    parser.add_argument("convoy", metavar="CONVOY.json",
                        help="what `experiment convoy --json` wrote")
    parser.set_defaults(run=_command)
