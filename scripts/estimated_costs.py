"""Write each catalogue study's ``estimated_cost`` from a results store, not by hand.

    python scripts/estimated_costs.py RESULTS_DIR [--check]

For every study file in ``src/gdscope/studies/catalog`` and each of its scales ``quick`` and
``paper`` stored in ``RESULTS_DIR`` (what ``bash scripts/verdicts_doc.sh`` leaves), the line
``estimated_cost = { quick = "...", paper = "..." }`` is rewritten from the store: how many
trials the scale plans, how many are stored, the wall time of the study's latest run (as
``docs/verdicts.md`` gives it), the summed trial time, the date and the machine. A scale not
in the store keeps its text. A paper-scale run stopped at its time limit says so: more than
the time it ran, with how many trials it stored. ``--check`` writes nothing and exits 1 if a
file would change.

The texts say what a study costs run alone, but the store of a catalogue run holds studies
that shared one pool of workers: a study's span there is shorter than its trials could take
alone (they ran beside other studies' trials, on more workers than two) or far longer (they
waited for other studies'). A wall time that two workers alone could not give, under half the
trial time or more than the trial time and :data:`OVERHEAD_S`, is replaced by half the trial
time, said to be estimated from it (:func:`alone`).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from gdscope.api import plan_study
from gdscope.report.collect import StudyView, collect
from gdscope.report.markdown import elapsed, machine, trial_time
from gdscope.store import Store

CATALOG = Path(__file__).resolve().parents[1] / "src" / "gdscope" / "studies" / "catalog"
_LINE = re.compile(r"^estimated_cost = \{.*\}$", re.MULTILINE)
_ENTRY = re.compile(r'(\w+) = "((?:[^"\\]|\\.)*)"')
OVERHEAD_S = 10.0
"""Seconds a study run alone may take beyond its summed trial time (starting the workers)."""
ESTIMATED = "(estimated from the trial time)"


def alone(wall_s: float, trial_s: float, rounding: float = 0.0) -> bool:
    """Whether a wall time fits a study run alone on 2 workers with ``trial_s`` of trial time.

    Two workers take at least half the summed trial time and at most about all of it (one of
    them idle) and :data:`OVERHEAD_S`; ``rounding`` is the error of numbers read from rounded
    text.

    >>> alone(17, 9), alone(41, 258), alone(81, 1), alone(1, 2, rounding=0.5)
    (True, False, False, True)
    """
    return trial_s / 2 - rounding <= wall_s <= trial_s + OVERHEAD_S + rounding


def estimated(trial_s: float) -> str:
    """Return the wall time estimated from ``trial_s`` of trial time: half of it, said so.

    >>> estimated(258), estimated(1)
    ('≈ 129 s (estimated from the trial time)', '≈ 1 s (estimated from the trial time)')
    """
    return f"≈ {max(trial_s / 2, 1):.0f} s {ESTIMATED}"


def cost_text(view: StudyView, planned: int, limit: str | None = None) -> str:
    """Say what one study's scale cost when it ran into the store ``view`` was read from.

    ``limit`` is how long a stopped run ran (``"600 s"``, from ``paper-times.tsv``): longer than
    the span of the trials it stored, and the only measure of a run that stored none.
    """
    failed = sum(t.get("status") == "failed" for t in view.trials)
    stored = len(view.trials) - failed
    spent = trial_time(view.trials)
    span = elapsed(view)
    wall = span.split(" (")[0]  # "17 s (stored DATE)": the date is said below
    when = str(view.runs.get("last_run") or "?")[:10]
    if stored == 0 and failed == 0:
        return (
            f"more than {limit or 'its time limit'} on 2 CPU cores with --workers 2: stopped "
            f"before any of its {planned} trials was stored (measured {when}); a rerun resumes"
        )
    where = machine(view.trials).split(";")[0]
    measured = f"{spent:.0f} s of trial time; measured {when} on {where}"
    resumed = "resumed" in span  # stored in more than one sitting
    if resumed:
        wall = f"≈ {spent / 2:.0f} s (in more than one sitting)"
    if stored < planned:
        lost = f", {failed} failed" if failed else ""
        ran = limit if limit and not resumed else wall  # the limit it ran under, when known
        if not resumed and _seconds(ran) < spent / 2 - 0.5:  # a lower bound: too short only
            ran = estimated(spent)
        return (
            f"more than {ran} on 2 CPU cores with --workers 2: stopped with {stored} of "
            f"{planned} trials stored{lost} ({measured}); a rerun resumes"
        )
    if wall == "reused" or resumed:
        return f"{planned} trials, ≈ {spent / 2:.0f} s on 2 CPU cores with --workers 2 ({measured})"
    if not alone(_seconds(wall), spent, rounding=0.5):  # its span in a shared pool
        wall = estimated(spent)
    return f"{planned} trials, {wall} on 2 CPU cores with --workers 2 ({measured})"


def _seconds(text: str) -> float:
    """``"17 s"`` → 17.0; nan for what is no number of seconds (``"reused"``)."""
    try:
        return float(text.removesuffix(" s"))
    except ValueError:
        return math.nan


def rewritten(path: Path, views: dict[tuple[str, str], StudyView], results: Path) -> str:
    """Return the study file at ``path`` with its ``estimated_cost`` line from the store."""
    text = path.read_text(encoding="utf-8")
    found = _LINE.search(text)
    entries = dict(_ENTRY.findall(found.group(0))) if found else {}
    for scale in ("quick", "paper"):
        view = views.get((path.stem, scale))
        if view is not None:
            planned = plan_study(path, scale=scale, results=results).trials
            limit = stopped_after(results, path.stem) if scale == "paper" else None
            entries[scale] = cost_text(view, planned, limit).replace('"', "'")
    if not entries:
        return text
    line = "estimated_cost = { " + ", ".join(f'{k} = "{v}"' for k, v in entries.items()) + " }"
    return _LINE.sub(lambda _: line, text, count=1) if found else text


def stopped_after(results: Path, study: str) -> str | None:
    """How long the study's latest paper-scale run ran if it was stopped (``paper-times.tsv``)."""
    times = results / "paper-times.tsv"
    if not times.is_file():
        return None
    rows = [line.split("\t") for line in times.read_text(encoding="utf-8").splitlines()]
    latest = [row for row in rows if len(row) >= 3 and row[0] == study][-1:]
    return latest[0][2] if latest and latest[0][1].startswith("stopped") else None


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check``, compare) every catalogue study's ``estimated_cost``."""
    parser = argparse.ArgumentParser(description="Write each study's estimated_cost from a store.")
    parser.add_argument("results", type=Path)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    args = parser.parse_args(argv)
    views = {(v.name, v.scale): v for v in collect(Store(args.results, read_only=True))}
    changed = []
    for path in sorted(CATALOG.glob("*.toml")):
        new = rewritten(path, views, args.results)
        if new != path.read_text(encoding="utf-8"):
            changed.append(path.name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "would change" if args.check else "rewrote"
    print(f"{verb} {len(changed)} study files: {', '.join(changed) or '-'}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
