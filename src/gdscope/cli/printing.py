"""What the study commands print: the plan of a dry run and the verdict tables.

Paper claims and instrument checks (``role = "sanity"``) in separate tables with their own
totals; each verdict's reason and finding on its own line, and a warning where a PASS or FAIL
rests on one seed.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from gdscope.cli.app import STATUS_STYLE, fmt, stdout


def print_plans(plans: list[Any]) -> None:
    """Print one row per planned study (trials, stored, to run, sweep, claims), then the totals."""
    table = Table(box=None, header_style="bold")
    for column in ("study", "scale"):
        table.add_column(column, no_wrap=True)
    for column in ("trials", "stored", "to run"):
        table.add_column(column, no_wrap=True, justify="right")
    table.add_column("sweep", overflow="fold")
    table.add_column("claims", overflow="fold")
    for plan in plans:
        sweep = escape(_sweep(plan.groups))  # values such as ["gd", "nag"] are not rich markup
        table.add_row(
            plan.study.name,
            plan.scale,
            str(plan.trials),
            str(plan.stored),
            str(plan.to_run),
            sweep,
            ", ".join(claim.id for claim in plan.study.claims),
        )
    stdout.print(table)
    for plan in plans:
        cost = plan.study.estimated_cost.get(plan.scale, "not stated")
        what = "estimated cost"
        if plan.overrides:  # measured on the study as shipped: it does not follow --set
            what += " of the study as shipped, not as --set changes it"
        stdout.print(
            f"  {plan.study.name} ({plan.scale}) {what}: {cost}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        for line in plan.unjudgeable():
            stdout.print(f"  warning: {line}", highlight=False, markup=False, soft_wrap=True)
    total, to_run = sum(p.trials for p in plans), sum(p.to_run for p in plans)
    stdout.print(
        f"{len(plans)} {'study' if len(plans) == 1 else 'studies'}, {total} trials: {total - to_run} stored, {to_run} to run "
        "(dry run: nothing ran, nothing written)",
        highlight=False,
    )


def _sweep(groups: list[dict[str, list[Any]]]) -> str:
    """Return the sweep's factors joined by ``×``: ``key=[…]``, or ``(k1, k2)=[(…), …]`` zipped.

    >>> _sweep([{"a": [1, 2]}, {"b": [3, 4], "c": [5, 6]}, {"seed": [0]}])
    'a=[1, 2] × (b, c)=[(3, 5), (4, 6)] × seed=[0]'
    """
    parts = []
    for group in groups:
        if len(group) == 1:
            ((key, values),) = group.items()
            parts.append(f"{key}={_values(values)}")
        else:
            pairs = [
                f"({', '.join(str(v) for v in point)})"
                for point in zip(*group.values(), strict=True)
            ]
            parts.append(f"({', '.join(group)})={_values(pairs)}")
    return " × ".join(parts)


def _values(values: list[Any]) -> str:
    """Return up to 6 values as a list, saying how many there are when some are left out.

    >>> _values([1, 2, 3]), _values(list(range(8)))
    ('[1, 2, 3]', '[0, 1, 2, 3, 4, 5, … 8 in all]')
    """
    shown = ", ".join(str(v) for v in values[:6])
    return f"[{shown}{f', … {len(values)} in all' if len(values) > 6 else ''}]"


def _interval(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or lo != lo or hi != hi:  # missing or NaN
        return ""
    return f"[{fmt(lo)}, {fmt(hi)}]"


def print_verdicts(rows: list[tuple[Any, Any]]) -> None:
    """Print the paper claims' verdicts, then the instrument checks (``role = "sanity"``) apart.

    Each part is a compact table, one line per verdict with its reason (and the study file's
    finding, if any), and its own totals: sanity checks never count among the paper claims.
    A study with ``seeds`` (at the verdict's scale) gets the one-seed warning where it applies
    (:func:`gdscope.report.labels.one_seed_warning`); one without says nothing of its seeds.
    """
    paper = [(s, v) for s, v in rows if getattr(v, "role", "paper") != "sanity"]
    sanity = [(s, v) for s, v in rows if getattr(v, "role", "paper") == "sanity"]
    _print_verdict_part(paper, "paper claims")
    if sanity:
        stdout.print()
        stdout.print("[bold]instrument checks[/] (identities and closed-form recursions)")
        _print_verdict_part(sanity, "instrument checks")


def _print_verdict_part(rows: list[tuple[Any, Any]], what: str) -> None:
    from gdscope.report.labels import one_seed_warning, set_note  # every verdict display's words

    if not rows:  # no header over nothing, no totals of zeros
        stdout.print(f"{what}: none")
        return
    table = Table(box=None, header_style="bold")
    for column in ("study", "claim", "status"):
        table.add_column(column, no_wrap=True)
    for column in ("statistic", "CI", "band", "n"):
        table.add_column(column)
    for study, v in rows:
        style = STATUS_STYLE.get(v.status, "white")
        ci = v.ci or (None, None)
        band = v.band or (None, None)
        table.add_row(
            escape(study.name),
            escape(v.claim_id),
            f"[{style}]{v.status}[/]",
            fmt(v.statistic),
            _interval(*ci),
            _interval(*band),
            str(v.n_points),
        )
    stdout.print(table)
    notes = {study.name: set_note(getattr(study, "overrides", ())) for study, _ in rows}
    for name, note in notes.items():
        if note:
            stdout.print(f"  {name}: {note}", highlight=False, markup=False, soft_wrap=True)
    for study, v in rows:
        stdout.print(f"  {v.claim_id}: {v.reason}", highlight=False, markup=False, soft_wrap=True)
        warning = one_seed_warning(v.status, getattr(study, "seeds", None))
        if warning:
            stdout.print(f"    warning: {warning}", highlight=False, markup=False, soft_wrap=True)
        finding = getattr(v, "finding", None)
        if finding:
            stdout.print(
                f"    finding: {' '.join(finding.split())}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    counts = {s: sum(v.status == s for _, v in rows) for s in STATUS_STYLE}
    stdout.print(f"{what}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
