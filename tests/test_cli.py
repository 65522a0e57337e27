# The command line: help for every subcommand, the kernels table, and one-line errors with
# exit status 2 for bad options.

import subprocess
import sys

import pytest

from gilstudy import cli

pytestmark = pytest.mark.one_pass


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "gilstudy", *argv], capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_subcommands():
    done = run_cli("--help")
    assert done.returncode == 0
    assert "kernels" in done.stdout


def test_every_subcommand_has_help(capsys):
    parser = cli.build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert subcommands
    for name in subcommands:
        with pytest.raises(SystemExit) as exited:
            cli.main([name, "--help"])
        assert exited.value.code == 0
        assert f"usage: gilstudy {name}" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_kernels_prints_a_table_with_the_speed_ratio():
    done = run_cli("kernels", "--repeat", "1", "--scale", "0.05", "--quiet")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("kernel"))
    assert "cython/python speedup" in header
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 2:]}
    assert set(rows) == {"countdown", "count_primes", "mandelbrot"}
    for row in rows.values():
        assert row.endswith("x") and float(row.split()[-1][:-1]) > 0
    assert "GIL enabled" in done.stdout or "GIL disabled" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["kernels", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
    (["kernels", "--scale", "abc"], "argument --scale: must be a number, got 'abc'"),
    (["kernels", "--scale", "-1"], "argument --scale: must be > 0, got -1"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_options_exit_2_with_one_line_and_no_traceback(argv, message):
    done = run_cli(*argv)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("gilstudy")
