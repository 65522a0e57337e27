# close(timeout=) on a fan-out: a Dispatch of coprocesses (and a Broadcast) with one hung
# worker is closed with a bound, as one runner is: the hung one raises CoprocessStalled and
# is left as it is, the others close, and a later close() or abort() ends the hung one.

import os

import pytest

import _coprocess_consumers as cc
from gilstudy.consumers import Collect
from gilstudy.dispatch import Broadcast, Dispatch
from gilstudy.errors import CoprocessStalled
from gilstudy.processes import coprocesses, spawn
from _leftovers import process_gone

TIMEOUT = 60




@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("then", ["abort", "close"])
def test_a_dispatch_with_a_hung_worker_closes_within_its_timeout(tmp_path, then):
    never = tmp_path / "never"
    results = Collect()
    hung = spawn(cc.Blocker, str(never))
    fine = spawn(cc.Echo, results=results)
    fan = Dispatch([hung, fine])
    hung.send("stuck")
    fine.send("delivered")
    with pytest.raises(CoprocessStalled) as info:
        fan.close(timeout=0.5)
    assert info.value.acknowledged == 0
    assert fine.is_closed and results.items == ["delivered", "closed"]
    assert hung.pid is not None and not ended_now(hung.pid)
    if then == "abort":
        fan.abort()
    else:
        never.touch()      # the worker can go on: a later close() ends it
        fan.close()
    assert process_gone(hung.pid)
    fan.close()            # idempotent once everything is closed


def ended_now(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(TIMEOUT)
def test_coprocesses_takes_close_timeout(tmp_path):
    fan = coprocesses(cc.Blocker, 2, str(tmp_path / "never"))
    fan.send("stuck")
    with pytest.raises(CoprocessStalled):
        fan.close(timeout=0.5)
    pids = [runner.pid for runner in fan.consumers]
    fan.abort()
    assert all(process_gone(pid) for pid in pids)


@pytest.mark.timeout(TIMEOUT)
def test_a_broadcast_takes_close_timeout(tmp_path):
    hung = spawn(cc.Blocker, str(tmp_path / "never"))
    plain = Collect()
    everyone = Broadcast([hung, plain])
    everyone.send("item")
    with pytest.raises(CoprocessStalled):
        everyone.close(timeout=0.5)
    assert plain.items == ["item"]
    everyone.abort()
    assert process_gone(hung.pid)


def test_close_refuses_a_bad_timeout():
    with pytest.raises(ValueError, match=r"^Dispatch\.close: timeout must be"):
        Dispatch([Collect()]).close(timeout=-1)
