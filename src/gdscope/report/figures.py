"""Which figures the report draws: per study, and per claim from its kind and evidence.

Per study: the training curves (loss against step, log scale), and where recorded the sharpness
against 2/η (an adaptive optimizer's preconditioned sharpness against its own threshold), the
NTK's smallest eigenvalue against width and the Hessian's eigenvalue density at the first and
last checkpoint (:mod:`~gdscope.report.density`). Per claim, the figure of its kind
(see :mod:`~gdscope.report.fits` and :mod:`~gdscope.report.claim_plots`): a fit with its points,
CI and band for ``power_law``/``slope`` (rate against κ when that is what is fitted), values
against the band for ``within`` (plus the curve itself with the band when the claim reads a
series in its own units, e.g. the sharpness plateau), curves against the threshold for
``reaches``... Every claim gets at least one figure: when there is nothing to draw, a small one
says so and why.
"""

from __future__ import annotations

from collections.abc import Callable

from gdscope.report import canvas, claim_plots, density, fits, series
from gdscope.report.canvas import Chart, Drawn
from gdscope.report.collect import ClaimView, StudyView

Builder = Callable[[ClaimView, StudyView], Drawn | None]
BY_KIND: dict[str, Builder] = {
    "power_law": fits.fit,
    "slope": fits.fit,
    "compare": fits.compare,
    "seed_spread": fits.seed_spread,
    "within": claim_plots.within,
    "agrees": claim_plots.agrees,
    "monotone": claim_plots.monotone,
    "optimum_shift": claim_plots.optimum_shift,
    "bound": claim_plots.bound,
    "reaches": claim_plots.reaches,
}


def study_charts(study: StudyView, files: bool = False) -> list[Chart]:
    """Draw the study's own figures: training curves, sharpness (vs 2/η), NTK λ_min, density.

    ``files``: also render each as SVG and PDF documents (``Chart.files``).
    """
    builders = (
        series.training_curves,
        series.sharpness_curves,
        series.preconditioned_curves,
        series.ntk_vs_width,
        density.density_curves,
    )
    charts = (canvas.render(b, study, files=files) for b in builders)
    return [c for c in charts if c is not None]


def claim_charts(claim: ClaimView, study: StudyView, files: bool = False) -> list[Chart]:
    """Draw the figures of one claim; at least one (``files`` as in :func:`study_charts`)."""
    build = BY_KIND.get(claim.kind, claim_plots.evidence)
    charts = [canvas.render(build, claim, study, files=files)]
    if charts[0] is None and claim.kind in BY_KIND:
        charts = [canvas.render(claim_plots.evidence, claim, study, files=files)]
    on_curve = claim_plots.curve_metric(claim)
    if on_curve is not None and series.has_curve(study.records, on_curve[0], points=3):
        charts.append(canvas.render(_on_curve, claim, study, files=files))
    found = [c for c in charts if c is not None]
    if found:
        return found
    reason = str((claim.verdict or {}).get("reason") or "no stored verdict")
    title = f"{claim.claim_id}: nothing to draw"
    return [canvas.message(title, "no points to draw", f"Nothing to draw: {reason}", files)]


def _on_curve(claim: ClaimView, study: StudyView) -> Drawn | None:
    """Draw the series a ``within`` claim reads, per trial, with the band (and window)."""
    found = claim_plots.curve_metric(claim)
    if found is None:
        return None
    metric, reducer = found
    band = (claim.verdict or {}).get("band") or claim.spec.get("band")
    window = reducer.get("window")
    return series.metric_curves(
        study.records,
        study.axes,
        metric,
        title=f"{claim.claim_id}: {metric} against step with the band",
        caption=(
            f"{metric} against step per trial; the claim reads its {reducer.get('reduce')} value"
            + (" over the grey window" if window else "")
            + " and needs it inside the shaded band"
            + (" (dotted: 2/η)." if metric == "sharpness" else ".")
        ),
        band=band,
        window=window,
        stability=metric == "sharpness",
    )
