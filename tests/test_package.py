# The package root: every public name resolves, and importing gilstudy stays light.

import subprocess
import sys

import pytest

import gilstudy

pytestmark = pytest.mark.one_pass


def test_every_public_name_resolves():
    for name in gilstudy.__all__:
        assert getattr(gilstudy, name) is not None, name


def test_public_names_come_from_their_modules():
    from gilstudy.consumers import Dispatch
    from gilstudy.coprocess import spawn
    from gilstudy.errors import CoprocessDied

    assert gilstudy.Dispatch is Dispatch and gilstudy.spawn is spawn
    assert gilstudy.CoprocessDied is CoprocessDied


def test_unknown_names_raise_attribute_error():
    try:
        gilstudy.nonexistent
    except AttributeError as error:
        assert str(error) == "module 'gilstudy' has no attribute 'nonexistent'"
    else:
        raise AssertionError("gilstudy.nonexistent resolved")


def test_importing_gilstudy_loads_no_heavy_module():
    # A coprocess child imports gilstudy first; it must not pay for numpy, threads or sockets.
    code = ("import sys, gilstudy; heavy = {'numpy', 'threading', 'socket', 'subprocess', "
            "'gilstudy.consumers', 'gilstudy.compare'}; print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
