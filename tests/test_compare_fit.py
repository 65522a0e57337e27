# The scaling fits recover the parameters of synthetic points made from known laws, keep
# parameters in bounds, and say plainly when there are too few points.

import pytest

from gilstudy.compare.fit import amdahl_speedup, fit_amdahl, fit_usl, usl_speedup

pytestmark = pytest.mark.one_pass


@pytest.mark.parametrize("s", [0.0, 0.05, 0.3, 1.0])
def test_amdahl_fit_recovers_the_serial_fraction(s):
    points = [(n, amdahl_speedup(n, s)) for n in (1, 2, 4, 8)]
    fit = fit_amdahl(points)
    assert fit.params["s"] == pytest.approx(s, abs=1e-9)
    assert fit.rms_error == pytest.approx(0, abs=1e-9)
    assert fit.speedup(64) == pytest.approx(amdahl_speedup(64, s))


@pytest.mark.parametrize("a, b", [(0.03, 0.001), (0.1, 0.0), (0.0, 0.02)])
def test_usl_fit_recovers_contention_and_coherency(a, b):
    points = [(n, usl_speedup(n, a, b)) for n in (1, 2, 4, 8, 16)]
    fit = fit_usl(points)
    assert fit.params["a"] == pytest.approx(a, abs=1e-9)
    assert fit.params["b"] == pytest.approx(b, abs=1e-9)
    assert fit.speedup(64) == pytest.approx(usl_speedup(64, a, b))


def test_a_slowdown_is_fitted_with_parameters_kept_at_their_bounds():
    # More workers made it slower: Amdahl can only say s = 1 (no gain), never s > 1.
    assert fit_amdahl([(1, 1.0), (2, 0.5)]).params["s"] == 1.0
    # Superlinear noise cannot push the USL parameters below zero.
    fit = fit_usl([(1, 1.0), (2, 2.2), (4, 4.6)])
    assert fit.params["a"] == 0.0 and fit.params["b"] == 0.0


def test_fits_need_enough_worker_counts():
    with pytest.raises(ValueError, match=r"^needs >= 2 worker counts$"):
        fit_amdahl([(1, 1.0)])
    with pytest.raises(ValueError, match=r"^needs >= 2 worker counts$"):
        fit_amdahl([])
    with pytest.raises(ValueError, match=r"^needs >= 3 worker counts$"):
        fit_usl([(1, 1.0), (2, 1.9)])


def test_fit_records_the_points_it_used():
    fit = fit_amdahl([(4, 3.0), (1, 1.0), (2, 1.8)])
    assert fit.points == ((1, 1.0), (2, 1.8), (4, 3.0))
    assert fit.describe_params().startswith("s=")
