# tools/check_scaling.py recomputes each model's N-worker speedup over its own 1 worker from
# the raw per-pass seconds of a compare JSON, and fails when a named model is below the target.

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_pass

TOOL = Path(__file__).resolve().parent.parent / "tools" / "check_scaling.py"
spec = importlib.util.spec_from_file_location("check_scaling", TOOL)
check_scaling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_scaling)


def document(rows):
    return {"environment": {"interpreters": [{"label": "3.11"}],
                            "outside_load": {"text": "outside load stayed low"}},
            "rows": [{"model": m, "interpreter": "3.11", "workers": n, "work_s": work_s,
                      "speedup_vs_own_1": 99.0} for m, n, work_s in rows]}


ROWS = [("threads-cython", 1, [0.030, 0.031, 0.029]), ("threads-cython", 2, [0.016, 0.015, 0.5]),
        ("prange-cython", 1, [0.030]), ("prange-cython", 2, [0.020]), ("serial-python", 1, [1.0])]


def test_speedups_are_recomputed_from_the_medians_of_the_raw_seconds():
    found = check_scaling.scaling(document(ROWS), 2)
    assert found == {"threads-cython": pytest.approx(0.030 / 0.016),
                     "prange-cython": pytest.approx(1.5)}


@pytest.mark.parametrize("models, status", [("threads-cython", 0), ("threads-cython,prange-cython", 1),
                                            ("pool-cython", 2)])
def test_the_tool_fails_when_a_named_model_is_below_the_target(tmp_path, capsys, models, status):
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(document(ROWS)))
    assert check_scaling.main([str(path), "--models", models, "--min", "1.8"]) == status
    out = capsys.readouterr().out
    if status != 2:
        assert "outside load stayed low" in out


QUICK = Path(__file__).resolve().parent.parent / "tools" / "check_quick.py"
quick_spec = importlib.util.spec_from_file_location("check_quick", QUICK)
check_quick = importlib.util.module_from_spec(quick_spec)
quick_spec.loader.exec_module(check_quick)


def test_the_quick_check_holds_only_the_compiled_rows_to_the_target():
    rows = document(ROWS)
    for row in rows["rows"]:
        row["impl"] = "python" if row["model"].endswith("-python") else "cython"
    rows["rows"].append({"model": "threads-python", "interpreter": "3.11", "workers": 2,
                         "work_s": [2.0], "impl": "python"})
    rows["rows"].append({"model": "threads-python", "interpreter": "3.11", "workers": 1,
                         "work_s": [1.0], "impl": "python"})
    assert check_quick.compiled_ratios(rows) == {"threads-cython": pytest.approx(0.030 / 0.016),
                                                 "prange-cython": pytest.approx(1.5)}
