"""The report page: one self-contained HTML document (inline CSS, figures as inline SVG).

Every string that comes from the store (study names, titles, claim ids, reasons, references,
config values, provenance) goes through :func:`esc` (``html.escape`` with quotes) before it
reaches the page, and the page's Content-Security-Policy allows no script at all, so a study
named ``<script>alert(1)</script>`` is shown as text. Anchors are built from positions, never
from names.

Each study's section is a ``<details>`` element (no script): its summary line, always shown,
gives the study's name, scale and verdict counts (``3 PASS · 1 FAIL``). A section starts open
when a researcher has something to look at in it: a paper claim that is FAIL or INCONCLUSIVE,
an instrument check that FAILs (an instrument is wrong), or when it is the page's only study;
the others start folded, one line each. The study's anchor ``#s3`` is its ``<details>``
element; a link to a claim inside a folded section (``#s3-c1``, from the tables at the top)
opens it: browsers reveal the closed ``<details>`` ancestors of a fragment's target (the HTML
standard's *ancestor details revealing algorithm*, in Chromium since 97).
"""

from __future__ import annotations

import html
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import TypeVar

from gdscope.report import environment, labels, summary, vector
from gdscope.report.canvas import Chart
from gdscope.report.collect import ClaimView, StudyView
from gdscope.report.figures import claim_charts, study_charts

T = TypeVar("T")
CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;
  margin:0 auto;max-width:1280px;padding:1.5em 2em 4em}
h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.35em;margin:1.6em 0 .3em;
  border-bottom:2px solid #ddd;padding-bottom:.15em}h3{font-size:1.08em;margin:1.2em 0 .3em}
.muted{color:#666}.small{font-size:.86em}code{font-size:.92em}
table{border-collapse:collapse;margin:.6em 0;width:100%}
th,td{border-bottom:1px solid #e3e3e3;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
td.ref{font-size:.8em;color:#444;max-width:24em}
.status{display:inline-block;padding:.05em .5em;border-radius:.8em;font-size:.8em;
  font-weight:600;letter-spacing:.02em;white-space:nowrap}
.PASS{background:#d8f0d8;color:#15591a}.FAIL{background:#f8d6d6;color:#8a1515}
.INCONCLUSIVE{background:#fbeccb;color:#7a5200}.NOT-JUDGED{background:#e6e6e6;color:#444}
.REPORTED{background:#dcecf7;color:#1d4f73}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1em;align-items:start;
  margin:.6em 0}
figure{margin:0;padding:.5em;border:1px solid #e6e6e6;border-radius:6px;background:#fff}
figure svg{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:.82em;color:#444;margin-top:.35em}
.claim{border-left:4px solid #ddd;padding:.1em 0 .1em 1em;margin:1.2em 0}
@media (min-width:1000px){.claim{display:grid;grid-template-columns:minmax(0,1fr) 460px;
  gap:1.2em;align-items:start}.claim .figures{grid-template-columns:1fr;margin:0}}
.claim-PASS{border-color:#4caf50}.claim-FAIL{border-color:#e53935}
.claim-INCONCLUSIVE{border-color:#f0a500}.claim-REPORTED{border-color:#4a90c2}
.reason{white-space:pre-wrap;overflow-wrap:anywhere}
.finding{background:#fff8e1;border-left:3px solid #e0a800;padding:.3em .6em}
.seed-warning{color:#7a5200}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8em;background:#f7f7f7;padding:.6em}
details{margin:.4em 0}summary{cursor:pointer;color:#333}
details.study{margin:0;border-bottom:1px solid #e3e3e3}
details.study>summary{list-style:none;display:flex;flex-wrap:wrap;align-items:baseline;
  gap:.2em .7em;padding:.4em 0;background:#fff}
details.study>summary::-webkit-details-marker{display:none}
details.study>summary::before{content:"▸";color:#777;width:.8em}
details.study[open]>summary::before{content:"▾"}
details.study[open]>summary{position:sticky;top:0;z-index:1;border-bottom:2px solid #ddd}
details.study>summary h2{font-size:1.2em;margin:0;border:0;padding:0}
details.study[open]{padding-bottom:1em}.claim,details.study{scroll-margin-top:3em}
.env th{width:12em;position:static}
.toc{columns:2;column-gap:2em;padding-left:1.2em}.toc-studies{font-size:.9em}
table.glance td{padding:.15em .5em}td.reason-line{color:#444;max-width:40em}
"""


def esc(value: object) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def page(studies: Sequence[StudyView], source: str, now: datetime | None = None) -> str:
    """Return the whole report for ``studies`` read from the results directory ``source``."""
    claims = [c for s in studies for c in s.claims]
    sanity = [c for c in claims if c.role == "sanity"]
    totals = summary.counts([c for c in claims if c.role != "sanity"], empty="no verdicts")
    if sanity:
        totals += f"; instrument checks apart: {summary.counts(sanity)}"
    trials = [t for s in studies for t in s.trials]
    body = [
        "<header><h1>gdscope report</h1>",
        f'<p class="muted">Results directory <code>{esc(source)}</code>: {len(studies)} '
        f"stud{'y' if len(studies) == 1 else 'ies'}, {len(claims)} claims ({esc(totals)}), "
        f"{len(trials)} stored trial rows.</p></header>",
        summary.at_a_glance(studies, esc, _status),  # the first screen: each paper's claims
        summary.contents(studies, esc, any(c.role == "sanity" for c in claims)),
        _verdict_table(studies, "paper"),
        _verdict_table(studies, "sanity"),
        _studies_intro(studies),
        *_study_sections(studies),
        _environment(studies, now),
    ]
    title = f"gdscope report: {len(studies)} studies, {totals}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _study_sections(studies: Sequence[StudyView]) -> list[str]:
    """Each study's foldable section; bodies drawn on every CPU core (the figures take longest)."""
    bodies = map_studies(_study, studies)
    return [
        f'<details class="study" id="s{i}"{" open" if opens(study, len(studies)) else ""}>'
        f"{_summary_line(study)}\n{body}\n</details>"
        for i, (study, body) in enumerate(zip(studies, bodies, strict=True))
    ]


def opens(study: StudyView, studies: int) -> bool:
    """Whether ``study``'s section starts open on a page of ``studies`` studies.

    Open: a paper claim is FAIL or INCONCLUSIVE, an instrument check FAILs, or it is the only
    study; folded otherwise (every claim passed or is reported, or there is no claim).
    """
    flagged = any(
        c.status == "FAIL" or (c.status == "INCONCLUSIVE" and c.role != "sanity")
        for c in study.claims
    )
    return flagged or studies == 1


def _studies_intro(studies: Sequence[StudyView]) -> str:
    """Return the heading above the study sections, saying how they fold."""
    if not studies:
        return ""
    shown = sum(opens(s, len(studies)) for s in studies)
    return (
        '<h2 id="studies">Studies</h2><p class="muted small">One section per study; '
        f"{shown} of {len(studies)} open: those with a paper claim that is FAIL or "
        "INCONCLUSIVE, an instrument check that fails, or a page's only study. Click a study's line to open or "
        "fold it; a link to a claim opens its section.</p>"
    )


def _summary_line(study: StudyView) -> str:
    """Return a study's summary line: name, scale, claim counts, checks, failed trials."""
    paper = [c for c in study.claims if c.role != "sanity"]
    checks = [c for c in study.claims if c.role == "sanity"]
    parts = [
        f'<h2>{esc(study.name)} <span class="muted small">scale {esc(study.scale)}'
        f"{esc(' · ' + labels.set_note(study.overrides)) if study.overrides else ''}</span></h2>",
        _pills(paper) if paper else '<span class="muted small">no paper claims</span>',
    ]
    if checks:
        parts.append(
            f'<span class="muted small">instrument checks: {esc(summary.counts(checks))}</span>'
        )
    if study.failed:
        parts.append(f'<span class="small">{len(study.failed)} failed trial(s)</span>')
    return "<summary>" + " ".join(parts) + "</summary>"


def _pills(claims: Sequence[ClaimView]) -> str:
    """``3 PASS · 1 FAIL`` as status pills."""
    seen = Counter(c.status for c in claims)
    return " · ".join(
        f'<span class="status {esc(s.replace(" ", "-"))}">{seen[s]} {esc(s)}</span>'
        for s in summary.STATUSES
        if seen[s]
    )


def map_studies(work: Callable[[int, StudyView], T], studies: Sequence[StudyView]) -> list[T]:
    """Return ``[work(i, study) for i, study in enumerate(studies)]``, on every CPU core.

    ``work`` must be a module-level function. Drawing is deterministic, so the result is the
    same on any number of processes; with one core, or one study, it stays in this process.
    Worker processes are spawned (never forked from a process that may hold torch's threads).
    """
    workers = min(len(studies), os.cpu_count() or 1)
    if workers < 2:
        return [work(i, s) for i, s in enumerate(studies)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(work, range(len(studies)), studies))


def _status(status: str) -> str:
    return f'<span class="status {esc(status.replace(" ", "-"))}">{esc(status)}</span>'


def _verdict_table(studies: Sequence[StudyView], role: str) -> str:
    """Return the table of the paper claims (``role="paper"``) or of the instrument checks."""
    head = (
        "<tr><th>Claim</th><th>Study</th><th>Status</th><th>Statistic [CI]</th><th>Band</th>"
        "<th>n</th><th>Reason</th></tr>"
    )
    rows = summary.verdict_rows(studies, role, esc, _status)
    if role == "sanity":
        if not rows:
            return ""
        title = "Instrument checks"
        intro = (
            '<p class="muted small">Identities and closed-form recursions (<code>role = '
            '"sanity"</code>): they cannot fail unless an instrument is wrong, so they are '
            "judged but not counted among the paper claims.</p>"
        )
        section = "checks"
    else:
        title, intro, section = "Verdicts", "", "verdicts"
    if not rows:
        rows.append('<tr><td colspan="7" class="muted">No claims stored.</td></tr>')
    return (
        f'<section id="{section}"><h2>{title}</h2>{intro}<table class="verdicts">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _figures(charts: Sequence[Chart], key: str) -> str:
    """Return the figures of a study (``key`` ``"s3"``) or claim (``"s3-c1"``), ids unique."""
    return (
        '<div class="figures">'
        + "".join(_figure(c, f"{key}-f{k}-") for k, c in enumerate(charts))
        + "</div>"
    )


def _figure(chart: Chart, prefix: str) -> str:
    """One inline SVG figure with its caption."""
    return (
        f"<figure>{vector.prefix_ids(chart.svg, prefix)}<figcaption><b>{esc(chart.title)}.</b> "
        f"{esc(chart.caption)}</figcaption></figure>"
    )


def _study(index: int, study: StudyView) -> str:
    """Return the body of a study's section: what ran, its figures, then each claim."""
    statuses = Counter(str(t.get("status")) for t in study.trials)
    ran = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "none stored"
    parts: list[str] = []
    if study.title:
        parts.append(f"<p><b>{esc(study.title)}</b></p>")
    meta = [f"trials: {esc(ran)}"]
    if study.provenance:
        meta.append(f"provenance: {esc(study.provenance)}")
    if study.axes:
        meta.append("swept: " + esc(", ".join(study.axes)))
    parts.append(f'<p class="muted small">{" · ".join(meta)}</p>')
    if study.reference:
        parts.append(f'<p class="small">Reference: {esc(study.reference)}</p>')
    if study.description:
        parts.append(
            "<details><summary>Study description</summary>"
            f'<p class="reason small">{esc(study.description)}</p></details>'
        )
    parts.append(_failed(study))
    parts.append(_figures(study_charts(study), f"s{index}"))
    parts += [_claim(index, j, claim, study) for j, claim in enumerate(study.claims)]
    return "\n".join(p for p in parts if p)


def _failed(study: StudyView) -> str:
    failed = study.failed
    if not failed:
        return ""
    items = "".join(
        f"<li><code>{esc(str(t.get('hash', ''))[:12])}</code> {esc(t.get('reason') or 'failed')}"
        + (f"<details><summary>error</summary><pre>{esc(t['error'])}</pre></details>" if t.get("error") else "")
        + "</li>"
        for t in failed
    )  # fmt: skip
    return f'<div class="failed"><p><b>{len(failed)} failed trial(s)</b></p><ul>{items}</ul></div>'


def _claim(i: int, j: int, claim: ClaimView, study: StudyView) -> str:
    verdict = claim.verdict or {}
    css = esc(claim.status.replace(" ", "-"))
    parts = [
        f'<article class="claim claim-{css}" id="s{i}-c{j}"><div class="claim-text">'
        f"<h3>{esc(claim.claim_id)} "
        f'{_status(claim.status)} <span class="muted small">{esc(claim.kind)}'
        f"{' · instrument check' if claim.role == 'sanity' else ''}</span></h3>"
    ]
    if claim.description:
        parts.append(f"<p>{esc(claim.description)}</p>")
    numbers = (
        f"statistic {labels.number(verdict.get('statistic'))} · CI "
        f"{labels.interval(verdict.get('ci'))} · band {labels.interval(verdict.get('band'))} · "
        f"n {labels.number(verdict.get('n_points'))}"
    )
    parts.append(f'<p class="muted small">{esc(numbers)}</p>')
    reason = verdict.get("reason") or "No stored verdict: this claim has not been judged."
    parts.append(f'<p class="reason">{esc(reason)}</p>')
    if warning := summary.seed_warning(claim, study, esc, before=""):
        parts.append(f'<p class="small">{warning}</p>')
    if claim.finding:
        parts.append(f'<p class="finding"><b>Finding.</b> {esc(claim.finding)}</p>')
    parts.append("</div>")  # the text beside its figures on a wide page
    parts.append(_figures(claim_charts(claim, study), f"s{i}-c{j}"))
    parts.append("</article>")
    return "\n".join(parts)


def _environment(studies: Sequence[StudyView], now: datetime | None) -> str:
    trials = [t for s in studies for t in s.trials]
    unique = {str(t.get("hash")): t for t in trials}.values()  # a shared trial counts once
    ran = _rows(environment.trial_environment(unique))
    wrote = _rows(environment.writer_environment(now))
    return (
        '<section id="environment"><h2>Environment</h2>'
        f'<h3>Trials ran with</h3><table class="env">{ran}</table>'
        f'<h3>This report</h3><table class="env">{wrote}</table></section>'
    )


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
