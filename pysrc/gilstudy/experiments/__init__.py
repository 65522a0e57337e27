"""Experiments on threads sharing one interpreter: the shared-counter race (race.py) and the
I/O thread stuck behind a CPU-bound one (convoy.py), run through `gilstudy experiment
race|convoy` under any CPython from 2.7 on: the threads run in a child interpreter, from
the self-contained script _workloads.py. `gilstudy experiment history` tabulates both.
"""

import importlib

from gilstudy.cli import add_command
from gilstudy.experiments import _experiment

__all__ = ["EXPERIMENTS", "add_subcommand"]

EXPERIMENTS = ("gilstudy.experiments.race", "gilstudy.experiments.convoy")


def add_subcommand(subparsers) -> None:
    """Register ``gilstudy experiment`` and its experiments on the CLI's subparsers."""
    parser = add_command(
        subparsers, "experiment", help="threads sharing data: the counter race and the I/O convoy",
        description="Experiments on threads in one interpreter, run under each interpreter "
                    "given with --python (any CPython from 2.7 on; 'all' for every one on "
                    "this machine), and the history table of both.")
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    experiments.required = True
    for module in EXPERIMENTS:
        _experiment.add_subcommand(experiments, importlib.import_module(module).EXPERIMENT)
    importlib.import_module("gilstudy.experiments.history").add_subcommand(experiments)
