# `gilstudy kernels --scale`: a scale no kernel can run at is refused before any timing, in
# one line with exit status 2 (issue 14, item 9); check_scale says why from Python.

import pytest

from gilstudy import cli, machine
from gilstudy.kernel_table import check_scale, default_args

pytestmark = pytest.mark.one_pass

LONG_MAX = 2**63 - 1
MEMORY = machine._bytes_text(machine.memory_bytes())


@pytest.mark.parametrize("scale, message", [
    ("inf", "--scale: must be a finite number > 0, got inf"),
    ("1e30", f"--scale: 1e+30 makes countdown({round(3e6 * 1e30)},) too large: countdown: n must "
             f"fit in a C long (<= {LONG_MAX}), got {round(3e6 * 1e30)}"),
    ("1e11", "--scale: 1e+11 makes mandelbrot(240, 16000000000000, 200) too large: mandelbrot: "
             "a 240 x 16000000000000 image needs 13,969.8 TiB of memory; this machine has "
             f"{MEMORY}"),
    ("nan", "argument --scale: must be > 0, got nan"),
    ("0", "argument --scale: must be > 0, got 0"),
    ("-1", "argument --scale: must be > 0, got -1"),
    ("big", "argument --scale: must be a number, got 'big'"),
], ids=["inf", "1e30", "image-too-big", "nan", "zero", "negative", "text"])
def test_a_scale_no_kernel_can_run_at_is_one_line_and_exit_status_2(capsys, scale, message):
    try:
        status = cli.main(["kernels", "--scale", scale])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err == f"gilstudy kernels: error: {message}\n"


def test_check_scale_accepts_what_every_kernel_can_run():
    assert check_scale(0.01) == 0.01
    assert default_args("count_primes", 0.5) == (0, 100_000)


@pytest.mark.parametrize("scale, error", [(float("inf"), ValueError), (1e30, OverflowError)])
def test_check_scale_raises_the_kernels_own_error(scale, error):
    with pytest.raises(error):
        check_scale(scale)
