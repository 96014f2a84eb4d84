"""The top of the report page: the claims at a glance per seed paper, contents, verdict tables.

At a glance, a reader sees per seed paper (the study files' ``seed_paper``; a user's studies
without one come last) each paper claim with its verdict, study and scale, and one line: the
study file's finding if it has one, else the verdict's reason, linked to the claim's section
and figures. Instrument checks (``role = "sanity"``) are counted apart. The verdict tables
have one row per claim (statistic, band, n and the reason in one line); a study's reference
and provenance are given once, in its own section. A PASS or FAIL that rests on one seed says
so wherever it is shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from gdscope.report import labels
from gdscope.report.collect import ClaimView, StudyView

Escape = Callable[[object], str]
STATUSES = ("PASS", "FAIL", "INCONCLUSIVE", "REPORTED", "NOT JUDGED")
OTHER = "other"
"""The group of studies that name no seed paper."""


def one_line(text: str, limit: int = 180) -> str:
    r"""Return ``text`` on one line, cut at ``limit`` characters with an ellipsis.

    >>> one_line("first line\n  second", 14)
    'first line se…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def counts(claims: Sequence[ClaimView], empty: str = "no claims") -> str:
    """Return ``"3 PASS, 1 FAIL"`` for ``claims`` (statuses in a fixed order), or ``empty``."""
    seen = Counter(c.status for c in claims)
    return ", ".join(f"{seen[s]} {s}" for s in STATUSES if seen[s]) or empty


def contents(studies: Sequence[StudyView], esc: Escape, checks: bool) -> str:
    """Return the table of contents: the page's parts, then every study with its counts."""
    parts = [("summary", "At a glance"), ("verdicts", "Verdicts")]
    parts += [("checks", "Instrument checks")] if checks else []
    links = "".join(f'<li><a href="#{anchor}">{name}</a></li>' for anchor, name in parts)
    items = "".join(
        f'<li><a href="#s{i}">{esc(s.name)}</a> <span class="muted small">{esc(s.scale)} · '
        f"{esc(counts(s.claims))}</span></li>"
        for i, s in enumerate(studies)
    )
    return (
        '<nav id="contents"><h2>Contents</h2><ul class="toc">'
        f'{links}<li><a href="#studies">Studies</a><ul class="toc-studies">{items}</ul></li>'
        '<li><a href="#environment">Environment</a></li></ul></nav>'
    )


def at_a_glance(studies: Sequence[StudyView], esc: Escape, status: Callable[[str], str]) -> str:
    """Return, per seed paper, each paper claim: verdict, claim (linked), study, one line."""
    groups: dict[str, list[tuple[int, int, ClaimView, StudyView]]] = {}
    for i, study in enumerate(studies):
        paper = str(study.spec.get("seed_paper") or OTHER)
        for j, claim in enumerate(study.claims):
            if claim.role != "sanity":
                groups.setdefault(paper, []).append((i, j, claim, study))
    sections = []
    for paper in sorted(groups, key=lambda p: (p == OTHER, p)):
        rows = groups[paper]
        heading = "Studies without a seed paper" if paper == OTHER else f"Seed paper {paper}"
        source = _common_reference([study for _, _, _, study in rows])
        items = "".join(
            f'<tr><td>{status(claim.status)}</td><td><a href="#s{i}-c{j}">'
            f"{esc(claim.claim_id)}</a></td>"
            f'<td class="small"><a href="#s{i}">{esc(study.name)}</a> '
            f'<span class="muted">{esc(study.scale)}</span></td>'
            f'<td class="small">{_line(claim, esc)}{seed_warning(claim, study, esc)}</td></tr>'
            for i, j, claim, study in rows
        )
        sections.append(
            f'<h3>{esc(heading)} <span class="muted small">'
            f"{esc(counts([c for _, _, c, _ in rows]))}</span></h3>"
            + (f'<p class="small muted">{esc(source)}</p>' if source else "")
            + f'<table class="glance"><tbody>{items}</tbody></table>'
        )
    checks = [c for s in studies for c in s.claims if c.role == "sanity"]
    apart = (
        f'<p class="small">Instrument checks, counted apart: {esc(counts(checks))} '
        '(<a href="#checks">list</a>).</p>'
        if checks
        else ""
    )
    body = "".join(sections) or '<p class="muted">No claims stored.</p>'
    return f'<section id="summary"><h2>At a glance</h2>{body}{apart}</section>'


def verdict_rows(
    studies: Sequence[StudyView], role: str, esc: Escape, status: Callable[[str], str]
) -> list[str]:
    """Return one compact row per claim of ``role`` (``"paper"`` or ``"sanity"``)."""
    rows = []
    for i, study in enumerate(studies):
        for j, claim in enumerate(study.claims):
            if (claim.role == "sanity") != (role == "sanity"):
                continue
            v = claim.verdict or {}
            statistic = labels.number(v.get("statistic"))
            ci = labels.interval(v.get("ci"))
            if ci != labels.MISSING:
                statistic += f" {ci}"
            rows.append(
                f'<tr class="verdict"><td><a href="#s{i}-c{j}">{esc(claim.claim_id)}</a></td>'
                f'<td><a href="#s{i}">{esc(study.name)}</a> '
                f'<span class="muted small">{esc(study.scale)}</span></td>'
                f"<td>{status(claim.status)}</td>"
                f'<td class="num">{esc(statistic)}</td>'
                f'<td class="num">{esc(labels.interval(v.get("band")))}</td>'
                f'<td class="num">{esc(labels.number(v.get("n_points")))}</td>'
                f'<td class="small reason-line">{_line(claim, esc, finding=False)}'
                f"{seed_warning(claim, study, esc)}</td></tr>"
            )
    return rows


def seed_warning(claim: ClaimView, study: StudyView, esc: Escape, before: str = "<br>") -> str:
    """Return the one-seed warning of ``claim`` as marked HTML after ``before``, ``""`` if none.

    (:func:`~gdscope.report.labels.one_seed_warning`, what ``gdscope run`` prints.)
    """
    text = labels.one_seed_warning(claim.status, study.seeds)
    if not text:
        return ""
    return f'{before}<span class="seed-warning"><b>Warning:</b> {esc(text)}</span>'


def _line(claim: ClaimView, esc: Escape, *, finding: bool = True) -> str:
    """Return the finding (marked) if there is one and ``finding``, else the verdict's reason."""
    if finding and claim.finding:
        return f"<b>Finding.</b> {esc(one_line(claim.finding))}"
    reason = (claim.verdict or {}).get("reason") or "not judged"
    return esc(one_line(str(reason)))


def _common_reference(studies: Sequence[StudyView]) -> str:
    """Return the reference most of ``studies`` give (ties: the first seen)."""
    found = Counter(s.reference for s in studies if s.reference)
    return found.most_common(1)[0][0] if found else ""
