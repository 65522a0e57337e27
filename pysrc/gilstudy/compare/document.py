"""`gilstudy compare` as a JSON document: every figure the run measured, the environment, the
projections, the verdict and the answer, whatever the text report shows (schema below).
Every function takes a CompareResult (gilstudy.compare.result)."""

import json
import math

from gilstudy.compare import projection, worker_costs
from gilstudy.compare.fit import PROJECT_AT
from gilstudy.compare.report import answer_lines, verdict_lines
from gilstudy.compare.result import CompareResult

__all__ = ["SCHEMA_VERSION", "to_dict", "to_json"]

# Version of the JSON document written by to_json(); raised whenever a key
# changes meaning or goes away (adding keys does not change it).
#
# Schema 3 (schema 2 timed one pass per repeat and described only kernels; now a repeat is
# passes until --min-time, sampled for outside load and re-run when disturbed, the workload
# may be a user's function, and projections past the cores are bounds unless 3 or more worker
# counts were measured), every key always present (null where a figure does not exist):
#   schema_version  int, 3
#   tool            "gilstudy compare";  gilstudy_version  str;  created  ISO 8601 UTC time
#   workload        {kind "kernel", name, size, size_means, items, whole_args [..], answer}
#                   or {kind "function", name, function, nogil|null, inputs|null (MODULE:
#                   NAME), items, answer}: answer is the reference model's: a number, for an
#                   image {shape, dtype, sum, sha256}, for a function {results, sha256}
#                   (sha256: the first 16 hex digits)
#   settings        {workers [int], repeat int, models [registry names asked for], reference
#                   str, pythons [the other interpreters' paths, in order], timing
#                   {min_time_s, max_outside_cores|null (never re-run), reruns}}
#   environment     {machine: gilstudy.machine.describe(), build: gilstudy.kernels.
#                   build_info() (Cython version, compiler, cflags, openmp, ...),
#                   versions {python, numpy, cython, joblib|null}: all three of the default
#                   interpreter (the one that ran `gilstudy compare`); idle_check {idle,
#                   busy_cores|null, waited_s, measured, text} (before timing), outside_load
#                   {repeats, disturbed (repeats whose first try was disturbed), reruns (tries
#                   run again), stayed_disturbed (kept although disturbed), max_outside_cores
#                   |null, text} (during timing), reference_run_s (default interpreter),
#                   interpreters [{label ("3.11", "3.13t", "3.11#2" for a second 3.11),
#                   default bool, executable, gil_enabled (as its runs ended),
#                   reference_run_s, machine, build, versions}], default first}
#   models          [{name (as rows name it: "threads-nogil" for a function's nogil twin),
#                   registered_as (its registry name), impl, summary, available,
#                   reason|null, reusable, max_workers|null, shares_gil, interpreter,
#                   family (threads, coprocesses ...: its colour in the plot), quick (in
#                   the default set)}] for
#                   every model asked for under every interpreter, runnable or not
#   rows            [{model, interpreter, gil_enabled, impl, workers, oversubscribed,
#                   restarted_per_repeat, startup_s [s per start], dispatch_s|null (s per
#                   probe item), work_s [s per pass, one per repeat], passes [per repeat],
#                   repeats [{pass_s [s of every pass], outside_cores|null, tries, disturbed}],
#                   set_aside [the disturbed tries run again, same keys], median_s, spread,
#                   speedup_vs_serial (against the default interpreter's reference),
#                   speedup_vs_own_serial (against the reference under the row's own
#                   interpreter), speedup_vs_own_1|null, efficiency|null}]
#   ceilings        [{model, interpreter, workers, dispatch_s|null, item_s|null, bound|null
#                   (d/c), at {"4","16","64": min(cores, bound)}}]
#   projections     [{model, interpreter, law "amdahl"|"usl", points [[workers, speedup vs
#                   own 1 worker]], params {s}|{a, b}|null, rms_error|null, projected {"4",
#                   "16","64": speedup}|null, reason|null (why there is no fit)}]
#   footprints      [{kind "thread"|"subinterpreter"|"coprocess", interpreter (label),
#                   workers, startup_s|null, startup_per_worker_s|null, rss_bytes|null,
#                   pss_bytes|null (per worker), unavailable|null (why not)}]: what a worker
#                   costs before any work (gilstudy.footprint); [] when not measured
#   footprint_kernel  the kernel those workers ran, or null
#   verdict         [sentences]
#   answer          {model, workers, speedup_vs_serial, spread ((high - low) / speedup),
#                   range [low, high] (the speedup by the slowest and fastest repeat), ties
#                   [the other models within that spread: a tie], tied [{model, workers,
#                   speedup_vs_serial, range}], min_item_s|null (the smallest item that
#                   keeps the model's workers busy: workers x dispatch_s), item_s (this
#                   workload's serial seconds per item), dispatch_s|null, python {model,
#                   workers, speedup_vs_serial, range}|null (the best running the Python
#                   implementation), threads {model, workers, speedup_vs_own_1, gil_enabled,
#                   helped}|null, next (what to try next), code|null, text [the answer
#                   block's lines]} (gilstudy.compare.answer)
SCHEMA_VERSION = 3


def to_dict(result: CompareResult) -> dict:
    """The JSON document (schema SCHEMA_VERSION, described at the top of this
    module): everything measured, whatever the text report leaves out."""
    from gilstudy import __version__

    idle = result.idle
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "gilstudy compare",
        "gilstudy_version": __version__,
        "created": result.created,
        "workload": result.workload.to_dict(result.expected),
        "settings": {"workers": list(result.workers), "repeat": result.repeat,
                     "models": list(dict.fromkeys(m.registered_as for m in result.models)),
                     "reference": result.reference,
                     "pythons": [i.executable for i in result.interpreters[1:]],
                     "timing": result.timing.to_dict()},
        "environment": {
            **{k: v for k, v in result.environment.items()},
            "idle_check": {"idle": idle.idle, "busy_cores": _finite(idle.busy_cores),
                           "waited_s": idle.waited_s, "measured": idle.measured,
                           "text": idle.describe()},
            "outside_load": result.outside_load(),
            "reference_run_s": result.reference_run_s,
            "interpreters": [{
                "label": i.label, "default": i.is_default, "executable": i.executable,
                "gil_enabled": i.gil_enabled, "reference_run_s": i.reference_run_s,
                **i.environment,
            } for i in result.interpreters],
        },
        "models": [vars(m).copy() for m in result.models],
        "rows": [{
            "model": r.model, "interpreter": r.interpreter, "gil_enabled": r.gil_enabled,
            "impl": r.impl, "workers": r.workers,
            "oversubscribed": r.oversubscribed, "restarted_per_repeat": r.restarted,
            "startup_s": list(r.startup_s), "dispatch_s": r.dispatch_s,
            "work_s": r.work_s, "passes": r.passes,
            "repeats": [repeat.to_dict() for repeat in r.repeats],
            "set_aside": [repeat.to_dict() for repeat in r.set_aside],
            "median_s": r.median_s, "spread": r.spread,
            "speedup_vs_serial": r.speedup_vs_serial,
            "speedup_vs_own_serial": r.speedup_vs_own_serial,
            "speedup_vs_own_1": r.speedup_vs_own_1, "efficiency": r.efficiency,
        } for r in result.rows],
        "ceilings": [{
            "model": c.model, "interpreter": c.interpreter, "workers": c.workers,
            "dispatch_s": c.dispatch_s, "item_s": c.item_s, "bound": c.bound,
            "at": {str(n): c.at(n) for n in PROJECT_AT},
        } for c in projection.ceilings(result)],
        "projections": [{
            "model": p.model, "interpreter": p.interpreter, "law": p.law,
            "points": [list(pt) for pt in p.points],
            "params": None if p.fit is None else dict(p.fit.params),
            "rms_error": None if p.fit is None else p.fit.rms_error,
            "projected": None if p.fit is None else {str(n): p.at(n) for n in PROJECT_AT},
            "reason": p.reason,
        } for p in projection.projections(result)],
        "footprints": worker_costs.to_dicts(result.footprints),
        "footprint_kernel": result.footprint_kernel,
        "verdict": verdict_lines(result),
        "answer": {**result.answer.to_dict(), "text": answer_lines(result)},
    }


def to_json(result: CompareResult, indent: int = 2) -> str:
    """to_dict() as JSON text (no NaN or infinity: a figure that does not exist is null)."""
    return json.dumps(to_dict(result), indent=indent, allow_nan=False)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
