"""`gilstudy compare` as text: the answer block first (gilstudy.compare.answer), then the
table of every row, the verdict in plain sentences, and behind ``details`` the start-up and
memory table and the projections. Every function takes a CompareResult
(gilstudy.compare.result) and returns text; none changes it."""

from gilstudy._table import format_table
from gilstudy.compare import projection, worker_costs
from gilstudy.compare.projection import seconds_text
from gilstudy.compare.answer import HELPED, Answer
from gilstudy.compare.facts import workers_text
from gilstudy.compare.result import CompareResult

__all__ = ["report", "answer_lines", "answer_block", "header", "table", "to_markdown",
           "verdict", "verdict_lines", "footprint_table", "markdown_table",
           "unavailable_notes", "workers_text", "ANSWER_LINES", "MAX_ANSWER_LINES"]


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def unavailable_notes(unavailable: dict[str, str]) -> list[str]:
    """'unavailable: NAME, NAME: REASON', one note per reason, the models in their order."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in unavailable.items():
        by_reason.setdefault(reason, []).append(name)
    return [f"unavailable: {', '.join(names)}: {reason}" for reason, names in by_reason.items()]


def markdown_table(cells: list[list[str]], notes: list[str]) -> str:
    """``cells`` (the first row the header) as a markdown table, the first column
    left-aligned and the others right-aligned, then ``notes`` as a list."""
    lines = ["| " + " | ".join(cells[0]) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(cells[0]) - 1)) + "|"]
    lines += ["| " + " | ".join(c.replace("*", "\\*") for c in row) + " |" for row in cells[1:]]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def _passes_text(passes: list[int]) -> str:
    """'12', or '11-13' when the repeats took different numbers of passes."""
    low, high = min(passes), max(passes)
    return f"{low}" if low == high else f"{low}-{high}"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


# ---- the table -----------------------------------------------------------------------


def _table_cells(result: CompareResult) -> list[list[str]]:
    # With one interpreter "vs its own serial" would repeat "vs serial", so it is left out.
    several = result.spans_interpreters
    header = ["model", "workers", "start-up s", "passes", "median s", "spread",
              f"vs {result.name_of(result.reference, result.default_label)}",
              *([f"vs {result.reference}@own"] if several else []),
              "vs own 1 worker", "efficiency"]
    cells = [header]
    for r in result.rows:
        cells.append([
            result.row_name(r), f"{r.workers}{'*' if r.oversubscribed else ''}",
            f"{r.startup_median_s:.3f}{' (each)' if r.restarted else ''}",
            _passes_text(r.passes), f"{r.median_s:.4f}",
            f"{100 * r.spread:.0f}%{'!' if r.stayed_disturbed else ''}",
            _fmt(r.speedup_vs_serial, ".2f", "x"),
            *([_fmt(r.speedup_vs_own_serial, ".2f", "x")] if several else []),
            _fmt(r.speedup_vs_own_1, ".2f", "x"), _fmt(r.efficiency, ".0%"),
        ])
    return cells


def _table_notes(result: CompareResult) -> list[str]:
    notes = [f"median s: seconds per pass over the whole workload, the median of "
             f"{result.repeat} repeats; each repeat ran passes back to back on the started "
             f"workers until it lasted at least {result.timing.min_time_s:g} s (passes: how "
             "many per repeat)", result.outside_load()["text"]]
    if result.spans_interpreters:
        notes.append(f"vs {result.reference}@own: against {result.reference} under the row's own "
                     f"interpreter; vs {result.name_of(result.reference, result.default_label)}: "
                     "against the default interpreter's, so a slower single thread shows")
    if any(r.oversubscribed for r in result.rows):
        notes.append(f"* more workers than the {result.usable_cores} usable cores "
                     "(oversubscribed)")
    if any(r.restarted for r in result.rows):
        notes.append("(each): the model's workers were started and stopped around every "
                     "repeat (they cannot be reused, or use CPU while idle); the median "
                     "start-up is shown")
    notes.extend(unavailable_notes(result.unavailable))
    return notes


def table(result: CompareResult) -> str:
    """The results as an aligned plain-text table, with its footnotes."""
    cells = _table_cells(result)
    text = format_table(cells, right=range(1, len(cells[0])))
    return "\n".join([text, *_table_notes(result)])


def to_markdown(result: CompareResult) -> str:
    """The results as a markdown table, with its footnotes."""
    return markdown_table(_table_cells(result), _table_notes(result))


def verdict(result: CompareResult) -> str:
    """A few plain sentences: who wins here, what start-up costs, whether threads
    helped under this interpreter's GIL."""
    return "\n".join(verdict_lines(result))


def verdict_lines(result: CompareResult) -> list[str]:
    lines = []
    reference = result.name_of(result.reference, result.default_label)
    best = min(result.rows, key=lambda r: r.median_s)
    lines.append(f"Fastest for {result.workload.title} here: {result.row_name(best)} with "
                 f"{workers_text(best.workers)}, {best.median_s:.4f} s, "
                 f"{_fmt(best.speedup_vs_serial, '.1f', 'x')} {reference}.")
    python_rows = [r for r in result.rows if r.impl == "python" and r.model != result.reference]
    if python_rows:
        top = min(python_rows, key=lambda r: r.median_s)
        if top.speedup_vs_serial is not None and top.speedup_vs_serial >= HELPED:
            lines.append(f"Best with {result.workload.impl_words('python')}: "
                         f"{result.row_name(top)} with "
                         f"{workers_text(top.workers)}, {top.speedup_vs_serial:.1f}x "
                         f"{reference}.")
        else:
            lines.append(f"No model ran {result.workload.impl_words('python')} much "
                         "faster than "
                         f"{reference} (best: {result.row_name(top)}, "
                         f"{_fmt(top.speedup_vs_serial, '.2f', 'x')}).")
    lines.extend(_interpreter_lines(result))
    lines.extend(_startup_lines(result))
    costs = worker_costs.summary_line(result.footprints)
    if costs:
        lines.append(costs)
    lines.extend(_gil_lines(result))
    if not result.idle.idle:
        lines.append(f"Caution: {result.idle.describe()} before timing; other load makes "
                     "every parallel figure look worse than it is.")
    if result.outside_load()["stayed_disturbed"]:
        lines.append("Caution: some repeats stayed disturbed by other processes (marked ! "
                     "in the table); their rows may look slower than they are.")
    return lines


def _startup_lines(result: CompareResult) -> list[str]:
    started = [r for r in result.rows if r.startup_s]
    if not started:
        return []
    costly = max(started, key=lambda r: r.startup_median_s)
    slowest: dict[str, float] = {}
    for r in started:
        slowest[result.row_name(r)] = max(slowest.get(result.row_name(r), 0.0),
                                         r.startup_median_s)
    cheap = [name for name, seconds in slowest.items() if seconds < 0.01]
    text = (f"Start-up: {result.row_name(costly)} took {costly.startup_median_s:.3f} s to start "
            f"{workers_text(costly.workers)}, "
            f"{_fmt(_ratio(costly.startup_median_s, costly.median_s), '.1f', 'x')} the "
            "time of one run of the workload on them: worth paying only when workers "
            "are reused.")
    if cheap:
        text += f" Under 10 ms: {', '.join(cheap)}."
    return [text]


def _gil_lines(result: CompareResult) -> list[str]:
    lines = []
    for info in result.models:
        rows = [r for r in result.rows_of(info.name, info.interpreter)
                if r.workers > 1 and r.speedup_vs_own_1 is not None]
        if not info.shares_gil or info.max_workers == 1 or not rows:
            continue
        top = max(rows, key=lambda r: r.speedup_vs_own_1)
        # Scaling from a slow 1-worker run is no help while serial-python stays faster:
        # serial-python under the row's own interpreter, so that a slower interpreter's
        # threads are judged by what they gain there.
        against_serial = top.speedup_vs_own_serial
        helped = top.speedup_vs_own_1 >= HELPED and (
            against_serial is None or against_serial >= HELPED)
        name = result.name_of(info.name, info.interpreter)
        outcome = "helped" if helped else "did not help"
        against = ("" if against_serial is None else
                   f", {against_serial:.2f}x "
                   f"{result.name_of(result.reference, info.interpreter)}")
        if info.impl == "python" and result.workload.python_holds_gil:
            if not top.gil_enabled:
                why = ("the GIL is disabled in this build, so pure-Python threads can run "
                       "at once")
            elif helped:  # under a GIL that can only be noise in the 1-worker time
                why = ("yet the GIL is enabled, so pure-Python threads take turns: the "
                       "1-worker run was slowed by something else, such as outside load")
            else:
                why = "the GIL is enabled, so pure-Python threads take turns"
            lines.append(f"{name}: threads {outcome} pure Python "
                         f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                         f"{top.workers} workers{against}); {why}.")
        elif info.impl == "python":
            lines.append(f"{name}: threads {outcome} {result.workload.impl_words('python')} "
                         f"(best {top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                         f"{top.workers} workers{against}), with the GIL "
                         f"{'enabled' if top.gil_enabled else 'disabled'}.")
        else:
            lines.append(f"{name}: {result.workload.impl_words(info.impl)} releases the "
                         "GIL; best "
                         f"{top.speedup_vs_own_1:.2f}x its 1-worker speed, at "
                         f"{top.workers} workers.")
    return lines


def _interpreter_lines(result: CompareResult) -> list[str]:
    """Per other interpreter: the single-thread cost (its reference time against the
    default's) and, where its GIL is disabled, what its pure-Python threads gained
    over its own reference, and the net of the two."""
    lines = []
    default = result.default_label
    base = result.rows_of(result.reference, default)[0]
    for other in result.interpreters[1:]:
        own = result.rows_of(result.reference, other.label)[0]
        cost = _ratio(own.median_s, base.median_s)
        text = (f"Single thread: {result.reference}@{other.label} (GIL "
                f"{'enabled' if other.gil_enabled else 'disabled'}) took "
                f"{_fmt(cost, '.2f', 'x')} the time of {result.reference}@{default}")
        threads = [r for r in result.rows if r.interpreter == other.label and r.impl == "python"
                   and r.workers > 1 and r.speedup_vs_own_serial is not None
                   and result.model(r.model, other.label).shares_gil]
        if other.gil_enabled or not threads:
            lines.append(text + ".")
            continue
        top = max(threads, key=lambda r: r.speedup_vs_own_serial)
        net = top.speedup_vs_serial
        pays = (f"the parallel gain outweighs the single-thread cost at "
                f"{workers_text(top.workers)}" if net is not None and net >= 1.0 else
                f"the parallel gain does not make up for the single-thread cost at "
                f"{workers_text(top.workers)}")
        lines.append(f"{text}; against that cost, {top.model}@{other.label} ran "
                     f"{top.speedup_vs_own_serial:.2f}x as fast as {result.reference}@"
                     f"{other.label} with {workers_text(top.workers)}, so "
                     f"{_fmt(net, '.2f', 'x')} {result.reference}@{default} net: {pays}.")
    return lines


def header(result: CompareResult) -> str:
    m = result.environment["machine"]
    first = (f"gilstudy compare: {result.workload.describe()}, median of {result.repeat} "
             f"interleaved repeats of at least {result.timing.min_time_s:g} s each")
    if not result.spans_interpreters:
        return (f"{first}\npython {m['python']} ({m['interpreter']}, GIL "
                f"{'enabled' if m['gil_enabled'] else 'disabled'}), {m['cpu_model']}, "
                f"{m['usable_cores']} usable cores; {result.idle.describe()}")
    lines = [f"{first}, the interpreters taking turns within each repeat"]
    for i in result.interpreters:
        im = i.environment["machine"]
        lines.append(f"@{i.label}: python {im['python']}, GIL "
                     f"{'enabled' if i.gil_enabled else 'disabled'}: {i.executable}"
                     f"{' (the default)' if i.is_default else ''}")
    lines.append(f"{m['cpu_model']}, {m['usable_cores']} usable cores; "
                 f"{result.idle.describe()}")
    return "\n".join(lines)


def footprint_table(result: CompareResult) -> str | None:
    """Start-up time and resident memory per worker for thread, subinterpreter and
    coprocess, side by side, under each interpreter; None when not measured."""
    if not result.footprints:
        return None
    return worker_costs.table_text(result.footprints, result.footprint_kernel)


# ---- the answer block -----------------------------------------------------------------

# The answer block is at most this many lines (the first says what was measured).
MAX_ANSWER_LINES = 10


def _range_text(low: float, high: float) -> str:
    return f"repeats {low:.2f}x to {high:.2f}x"


def _use_line(result: CompareResult, answer: Answer) -> str:
    """Which model, at how many workers, how much faster, how sure; or the tie."""
    reference = result.name_of(result.reference, result.default_label)
    best = answer.best
    if not answer.ties:
        return (f"Use {best.model} with {workers_text(best.workers)}: {best.speedup:.2f}x "
                f"{reference} ({_range_text(best.low, best.high)}).")
    tied = [best, *answer.ties]
    low, high = min(s.low for s in tied), max(s.high for s in tied)
    counts = {s.workers for s in tied}
    if len(counts) == 1:
        listed = ", ".join(f"{s.model} {s.speedup:.2f}x" for s in tied)
        each = f", each with {workers_text(counts.pop())}"
    else:
        listed = ", ".join(f"{s.model} {s.speedup:.2f}x ({workers_text(s.workers)})"
                           for s in tied)
        each = ""
    return (f"Tie, within each other's spread: {listed} {reference}{each} (repeats "
            f"{low:.2f}x to {high:.2f}x); this run cannot tell them apart, so use any.")


def _python_line(result: CompareResult, answer: Answer) -> str | None:
    """The best without compiling, when the answer runs compiled code."""
    top = answer.python
    if top is None or answer.best.impl == "python" or any(t.impl == "python"
                                                          for t in answer.ties):
        return None
    reference = result.name_of(result.reference, result.default_label)
    words = result.workload.impl_words("python")
    if top.speedup < HELPED:
        return (f"With {words}: nothing beat {reference} by much (best {top.model}, "
                f"{top.speedup:.2f}x).")
    return (f"With {words}: {top.model} with {workers_text(top.workers)}, "
            f"{top.speedup:.2f}x {reference} ({_range_text(top.low, top.high)}).")


def _threads_line(result: CompareResult, answer: Answer) -> str | None:
    """Whether threads helped the Python implementation, and why (the GIL)."""
    found = answer.threads
    if found is None:
        return None
    outcome = "help" if found.helped else "do not help"
    ran = (f"{found.model} ran at {found.speedup_vs_own_1:.2f}x its 1-worker speed with "
           f"{workers_text(found.workers)}")
    if found.speedup_vs_serial is not None:
        ran += f", {found.speedup_vs_serial:.2f}x {result.reference}"
    if not found.gil_enabled:
        why = "the GIL is disabled in this build, so Python threads run at once"
    elif not found.python_holds_gil:
        why = ("the GIL is enabled; threads help only while the function releases it (I/O, "
               "numpy, hashlib)")
    elif found.helped:
        why = ("yet the GIL is enabled, so Python threads take turns: outside load slowed "
               "the 1-worker run")
    else:
        why = "the GIL is enabled, so Python threads take turns"
    return f"Threads {outcome} {result.workload.impl_words('python')} here: {ran}; {why}."


def _items_line(result: CompareResult, answer: Answer) -> str | None:
    """The smallest item that pays off for the answer's model, from its dispatch cost."""
    best = answer.best
    if best.is_serial or best.workers == 1:  # no workers to keep busy
        return None
    held = f"this workload's items hold {seconds_text(answer.item_s)} of work each"
    if best.dispatch_s is None:
        return (f"Items: {best.model} hands over no items (one parallel call per pass); "
                f"{held}.")
    return (f"Items: {best.model} spends {seconds_text(best.dispatch_s)} handing over an "
            f"item, so items of {seconds_text(best.min_item_s)} or more keep "
            f"{workers_text(best.workers)} busy; {held}.")


def _next_line(result: CompareResult, answer: Answer) -> str:
    return f"Next: {answer.next_step}."


def _caution_line(result: CompareResult, answer: Answer) -> str | None:
    if not result.idle.idle:
        return (f"Caution: {result.idle.describe()} before timing; parallel figures look "
                "worse than they are.")
    if result.outside_load()["stayed_disturbed"]:
        return ("Caution: some repeats stayed disturbed by other processes (! in the table).")
    return None


def _code_line(result: CompareResult, answer: Answer) -> str | None:
    return None if answer.code is None else f"Code: {answer.code}"


# The lines of the answer block after its first, in order: each a function of the result
# and its answer returning one line, or None to leave it out. Adding a line is adding a
# function here (the block stays within MAX_ANSWER_LINES).
ANSWER_LINES = (_use_line, _python_line, _threads_line, _items_line, _next_line,
                _caution_line, _code_line)


def answer_lines(result: CompareResult) -> list[str]:
    """The answer block as lines: what was asked, then ANSWER_LINES' lines; at most
    MAX_ANSWER_LINES."""
    m = result.environment["machine"]
    first = (f"Answer for {result.workload.describe()} on this machine "
             f"({m['usable_cores']} usable cores, python {m['python']}, GIL "
             f"{'enabled' if m['gil_enabled'] else 'disabled'}):")
    answer = result.answer
    lines = [first]
    for make in ANSWER_LINES:
        line = make(result, answer)
        if line:
            lines.append(line)
    return lines[:MAX_ANSWER_LINES]


def answer_block(result: CompareResult, markdown: bool = False) -> str:
    """answer_lines() as text: the first line, then the others indented (as a list in
    markdown)."""
    first, *rest = answer_lines(result)
    if markdown:
        return "\n".join([f"**{first}**", "", *[f"- {line}" for line in rest]])
    return "\n".join([first, *[f"  {line}" for line in rest]])


def report(result: CompareResult, markdown: bool = False, details: bool = False) -> str:
    """What the CLI prints: the answer block, the header, the table, the verdict; with
    ``details`` also the start-up and memory table and the projections (else one line
    says how to see them)."""
    parts = [answer_block(result, markdown), header(result),
             to_markdown(result) if markdown else table(result)]
    costs = footprint_table(result) if details else None
    if costs:
        parts.append(f"```\n{costs}\n```" if markdown else costs)
    parts.append("Verdict:\n" + "\n".join(f"- {line}" for line in verdict_lines(result)))
    projections = projection.projection_text(result) if details else ""
    if projections:
        parts.append(f"```\n{projections}\n```" if markdown else projections)
    if not details:
        parts.append("More: --details (or report(result, details=True)) adds the start-up "
                     "and memory per worker and what these figures bound past this machine; "
                     "the JSON always holds everything.")
    return "\n\n".join(parts)
