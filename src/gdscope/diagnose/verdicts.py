r"""What the theories predict for a diagnosed run, and whether their measurable assumptions hold.

Each :class:`Check` names one statement of the catalogue's seed papers, the numbers measured
for it and the threshold that decides it; its status is ``"holds"``, ``"fails"`` or ``"n/a"``
(an assumption it needs is not met, or the quantity does not apply to this run, with the
reason). Nothing here trains: :func:`judge` reads :class:`~gdscope.diagnose.measure.Measurements`.

Predicted per-step rates (kernel quantities of ``K/p`` on the NTK probe set, ``mse`` loss): GD
with step ``η`` on the linearised model contracts the residual by
``ρ_GD = max(|1 − ηλ_min|, |1 − ηλ_max|)`` and the loss by ``ρ_GD²`` (Jacot et al. 2018; Du et
al. 2019); with Liu & Pan's tunings ``η = 1/λ_max`` GD contracts by ``1 − 1/κ`` and NAG
(``β = (√κ − 1)/(√κ + 1)``) by ``1 − 1/√κ``, so NAG needs ``√κ`` times fewer steps (Liu & Pan
2021). Under the PL inequality ``½‖∇L‖² ≥ μL`` on the path and ``η ≤ 1/S``, ``L_t ≤ (1 − ημ)^t L₀``
(Liu, Zhu & Belkin 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

from gdscope.diagnose.measure import EDGE_FRACTION, Measurements
from gdscope.report.labels import format_against
from gdscope.stats.rates import RATE_MIN_R2

__all__ = ["LAZY_DRIFT", "LAZY_MOVEMENT", "Check", "Diagnosis", "fit_r2", "format_rate", "judge"]

LAZY_DRIFT = 0.1
"""The kernel regime: relative NTK drift ``‖K_T − K₀‖_F/‖K₀‖_F`` below this."""
LAZY_MOVEMENT = 0.1
"""Lazy weights: relative movement ``‖θ_T − θ₀‖/‖θ₀‖`` below this."""
RATE_SLACK = 0.05
"""A fitted rate ``ρ`` meets a predicted bound ``ρ̄`` when ``1 − ρ ≥ (1 − RATE_SLACK)(1 − ρ̄)``."""
MIN_STEPS = 10
"""Fewer updates than this say nothing about a regime: every "stays near init" check would hold."""
Status = Literal["holds", "fails", "n/a"]


@dataclass(frozen=True)
class Check:
    """One theorem's measurable assumption or prediction on this run."""

    key: str
    claim: str
    reference: str
    status: Status
    measured: str
    threshold: str


@dataclass(frozen=True)
class Diagnosis:
    """The measurements, the regime they place the run in, the predicted rates and the checks."""

    measurements: Measurements
    regime: str
    regime_reason: str
    predictions: dict[str, float]
    checks: tuple[Check, ...]

    def check(self, key: str) -> Check:
        """Return the check ``key`` (e.g. ``"stability"``, ``"ntk_regime"``)."""
        return next(c for c in self.checks if c.key == key)

    def to_dict(self) -> dict[str, Any]:
        """Return the diagnosis as JSON-ready data (nan and ±inf as ``None``)."""
        m = self.measurements
        skip = {"config", "records", "schedule"}
        values = {f.name: getattr(m, f.name) for f in fields(m) if f.name not in skip}
        values["lr_multipliers"] = list(m.lr_multipliers)
        return _json_ready(
            {
                "config": m.config.model_dump(mode="json"),
                "measurements": {**values, "above_edge": m.above_edge},
                "regime": self.regime,
                "regime_reason": self.regime_reason,
                "predictions": self.predictions,
                "checks": [c.__dict__ for c in self.checks],
                "schedule": m.schedule,
                "series": {k: {"steps": s, "values": v} for k, (s, v) in m.records.items()},
            }
        )


def judge(m: Measurements) -> Diagnosis:
    """Place ``m`` in a regime, predict its rates and check each theory's assumptions."""
    regime, reason = _regime(m)
    p = predictions(m)
    checks = (
        _stability(m),
        _edge_of_stability(m),
        _ntk_regime(m),
        _lazy_weights(m),
        _ntk_rate(m, p),
        _pl(m, p),
        _nag(m, p),
    )
    return Diagnosis(m, regime, reason, p, checks)


def predictions(m: Measurements) -> dict[str, float]:
    """Per-step rates the kernel and PL arguments predict (nan where undefined)."""
    lo, hi, eta = m.ntk_lambda_min, m.ntk_lambda_max, m.lr
    gd = max(abs(1 - eta * lo), abs(1 - eta * hi))
    kappa = m.ntk_kappa
    finite = math.isfinite(kappa) and kappa > 0
    return {
        "gd_residual_rate": gd,
        "gd_loss_rate": gd**2,
        "gd_tuned_residual_rate": 1 - 1 / kappa if finite else math.nan,
        "nag_tuned_residual_rate": 1 - 1 / math.sqrt(kappa) if finite else math.nan,
        "nag_speedup": math.sqrt(kappa) if finite else math.nan,
        "pl_loss_rate": 1 - eta * m.pl_ratio_min if math.isfinite(m.pl_ratio_min) else math.nan,
    }


def _regime(m: Measurements) -> tuple[str, str]:
    numbers = f"NTK drift {_drift(m)}, weight movement {_movement(m)}"
    if m.status == "diverged":
        return "diverged", f"the run diverged ({m.reason})"
    if m.steps < MIN_STEPS:
        return "unknown", f"only {m.steps} steps: too few to tell a regime (≥ {MIN_STEPS})"
    if not (math.isfinite(m.ntk_drift) and math.isfinite(m.weight_movement)):
        return "unknown", f"{numbers}: not measurable"
    if m.ntk_drift < LAZY_DRIFT and m.weight_movement < LAZY_MOVEMENT:
        return "lazy", f"{numbers}, both < {LAZY_DRIFT}: kernel regime"
    if m.ntk_drift >= LAZY_DRIFT:
        return "feature learning", f"{numbers}: the kernel moved (drift ≥ {LAZY_DRIFT})"
    return "intermediate", (
        f"{numbers}: the kernel stayed (drift < {LAZY_DRIFT}) but the weights moved "
        f"(≥ {LAZY_MOVEMENT})"
    )


def _stability(m: Measurements) -> Check:
    claim = "η below the stability edge at init: the step is stable on the local quadratic"
    ref = "Cohen et al. 2021 (edge of stability); Polyak 1964 for momentum"
    measured = f"η = {_g(m.lr)}, S₀ = {_g(m.sharpness_init)} ({m.hessian_examples} examples)"
    if not math.isnan(m.stability_edge):  # nan: the optimizer has no such edge
        measured += f", edge = {_g(m.stability_edge)}, η/edge = {_over_edge(m)}"
    threshold = f"η < {_edge_formula(m)}"
    if m.edge_note:
        return Check("stability", claim, ref, "n/a", measured, m.edge_note)
    return Check("stability", claim, ref, _holds(not m.above_edge), measured, threshold)


def _edge_of_stability(m: Measurements) -> Check:
    claim = "the run reaches the edge of stability, where GD's sharpness rises to S* and hovers"
    ref = "Cohen et al. 2021, ICLR (S* = 2/η for GD)"
    where = "never" if m.edge_step is None else f"at step {m.edge_step}"
    measured = f"S₀ = {_g(m.sharpness_init)}, max S = {_g(m.sharpness_max)} over {m.steps} steps"
    if math.isfinite(m.critical_sharpness):  # nan: the optimizer has no S*
        measured = f"S* = {_g(m.critical_sharpness)}, {measured}; S ≥ {EDGE_FRACTION}·S* {where}"
    threshold = f"reached: S ≥ {EDGE_FRACTION}·S* within the run, from S₀ below it"
    why = m.edge_note or _ran(m)
    if not why and m.sharpness_init >= EDGE_FRACTION * m.critical_sharpness:
        why = f"S₀ ≥ {EDGE_FRACTION}·S* already at init: η starts at the edge, nothing to rise to"
    if why:
        return Check("edge_of_stability", claim, ref, "n/a", measured, why)
    return Check(
        "edge_of_stability", claim, ref, _holds(m.edge_step is not None), measured, threshold
    )


def _ntk_regime(m: Measurements) -> Check:
    claim = "NTK regime: the kernel stays at K₀ with λ_min > 0, so GD converges linearly"
    ref = "Jacot, Gabriel & Hongler 2018; Du et al. 2019, ICLR"
    measured = (
        f"drift ‖K_T − K₀‖_F/‖K₀‖_F = {_drift(m)}, λ_min(K₀/p) = {_g(m.ntk_lambda_min)} "
        f"(p = {m.ntk_examples})"
    )
    threshold = f"drift < {LAZY_DRIFT} and λ_min > 0 (beyond rounding)" + _on_probe_set(m)
    why = _ran(m) or (f"needs loss mse, got {m.loss}" if m.loss != "mse" else "")
    if why:
        return Check("ntk_regime", claim, ref, "n/a", measured, why)
    ok = m.ntk_drift < LAZY_DRIFT and m.ntk_lambda_min > 0
    return Check("ntk_regime", claim, ref, _holds(ok), measured, threshold)


def _lazy_weights(m: Measurements) -> Check:
    claim = "lazy training: the weights barely move from their init"
    ref = "Chizat, Oyallon & Bach 2019, NeurIPS; Lee et al. 2019"
    measured = f"‖θ_T − θ₀‖/‖θ₀‖ = {_movement(m)}"
    threshold = f"< {LAZY_MOVEMENT}"
    why = _ran(m)
    if why:
        return Check("lazy_weights", claim, ref, "n/a", measured, why)
    return Check(
        "lazy_weights", claim, ref, _holds(m.weight_movement < LAZY_MOVEMENT), measured, threshold
    )


def _ntk_rate(m: Measurements, p: dict[str, float]) -> Check:
    claim = "in the kernel regime the loss falls at least as fast as ρ_GD² per step"
    ref = "Du et al. 2019, ICLR (rate set by λ_min); Jacot et al. 2018"
    measured = (
        f"fitted ρ = {format_rate(m.loss_rate)} (R² = {fit_r2(m)}), "
        "predicted ρ_GD² = "
        f"max(|1 − ηλ_min|, |1 − ηλ_max|)² = {format_rate(p['gd_loss_rate'])}"
    )
    threshold = (
        f"1 − ρ ≥ {1 - RATE_SLACK}·(1 − ρ_GD²); λ from the NTK probe set of {m.ntk_examples}"
    )
    why = _gd_only(m) or _kernel_assumption(m) or _ran(m)
    if not why and m.ntk_examples < m.n_train:
        why = (
            f"λ_min of the {m.n_train} training examples is not measured: the NTK probe set's "
            f"({m.ntk_examples}) only bounds it from above (interlacing); measure the NTK on all "
            f"of them: --probe-size {m.n_train} (ntk_examples={m.n_train} from Python)"
        )
    if not why and not m.loss_rate_ok:
        why = _rejected_fit(m)
    if not why and not p["gd_residual_rate"] < 1:
        why = "ρ_GD ≥ 1: η·λ_max ≥ 2, GD on the kernel is not contracting"
    if why:
        return Check("ntk_rate", claim, ref, "n/a", measured, why)
    return Check(
        "ntk_rate", claim, ref, _holds(_meets(m.loss_rate, p["gd_loss_rate"])), measured, threshold
    )


def _pl(m: Measurements, p: dict[str, float]) -> Check:
    claim = "PL on the path (½‖∇L‖² ≥ μL) and η ≤ 1/S give L_t ≤ (1 − ημ)^t L₀"
    ref = "Liu, Zhu & Belkin 2022, ACHA; Polyak 1963"
    measured = (
        f"μ = min PL ratio = {_g(m.pl_ratio_min)} (at init {_g(m.pl_ratio_init)}), "
        f"η·max S = {_eta_s(m)}, fitted ρ = {format_rate(m.loss_rate)}, "
        f"1 − ημ = {format_rate(p['pl_loss_rate'])}"
    )
    threshold = f"μ > 0, η·max S ≤ 1 and 1 − ρ ≥ {1 - RATE_SLACK}·ημ"
    why = _gd_only(m)
    if not why and not m.pl_ratio_min > 0:
        why = "μ = 0 on the path: no PL constant was measured"
    if not why and m.lr * m.sharpness_max > 1:
        why = f"η·max S = {_eta_s(m)} > 1: the bound assumes η ≤ 1/S"
    if not why and not math.isfinite(m.loss_rate):
        why = "no rate could be fitted to the loss"
    if not why and not m.loss_rate_ok:  # a rejected ρ supports no verdict
        why = f"{_rejected_fit(m)}: the rate cannot be judged from this run"
    if why:
        return Check("pl", claim, ref, "n/a", measured, why)
    return Check(
        "pl", claim, ref, _holds(_meets(m.loss_rate, p["pl_loss_rate"])), measured, threshold
    )


def _nag(m: Measurements, p: dict[str, float]) -> Check:
    claim = "NAG accelerates GD by √κ (rate 1 − 1/√κ against 1 − 1/κ) in the kernel regime"
    ref = "Liu & Pan 2021 (arXiv 2107.01832); Nesterov 1983"
    measured = (
        f"κ = {_g(m.ntk_kappa)} (NTK probe set of {m.ntk_examples}), drift = "
        f"{_drift(m)}: NAG 1 − 1/√κ = "
        f"{format_rate(p['nag_tuned_residual_rate'])}, GD 1 − 1/κ = "
        f"{format_rate(p['gd_tuned_residual_rate'])}, "
        f"speed-up √κ = {_g(p['nag_speedup'])}"
    )
    threshold = f"assumptions: loss mse, λ_min > 0 (κ finite), drift < {LAZY_DRIFT}"
    threshold += _on_probe_set(m)
    # outside the kernel regime the theorem says nothing: n/a, as Du et al.'s rate (not "fails")
    why = _ran(m) or _kernel_assumption(m)
    if why:
        return Check("nag", claim, ref, "n/a", measured, why)
    return Check("nag", claim, ref, _holds(math.isfinite(m.ntk_kappa)), measured, threshold)


def _gd_only(m: Measurements) -> str:
    name = m.config.optimizer.name
    if name not in ("gd", "sgd"):
        return f"predicts plain GD, the run uses {name!r}"
    if m.config.batch_size is not None and m.config.batch_size < m.n_train:
        return "predicts full-batch GD, the run takes mini-batches"
    if m.status == "diverged":
        return "the run diverged"
    return ""


def _on_probe_set(m: Measurements) -> str:
    """Say that λ_min is the probe set's, where it is not the training set's."""
    if m.ntk_examples >= m.n_train:
        return ""
    return (
        f", on the NTK probe set of {m.ntk_examples} of {m.n_train} examples (the training "
        "set's λ_min may be smaller)"
    )


def _ran(m: Measurements) -> str:
    """Why the run says nothing about where training went (diverged, or too short), or ``""``."""
    if m.status == "diverged":
        return "the run diverged"
    if m.steps < MIN_STEPS:
        return f"only {m.steps} steps (≥ {MIN_STEPS} needed)"
    return ""


def _kernel_assumption(m: Measurements) -> str:
    if m.loss != "mse":
        return f"needs loss mse, got {m.loss}"
    if not m.ntk_lambda_min > 0:
        return f"needs λ_min > 0, got {_g(m.ntk_lambda_min)}"
    if not m.ntk_drift < LAZY_DRIFT:
        return f"needs the kernel regime (drift < {LAZY_DRIFT}), got drift {_drift(m)}"
    return ""


def _rejected_fit(m: Measurements) -> str:
    """Why the fitted loss rate ρ is rejected (a loss not linear on a log scale, or unfitted)."""
    bent = m.loss_rate_r2 < RATE_MIN_R2
    return f"the loss is {'not linear on a log scale' if bent else 'not fitted'} (R² = {fit_r2(m)})"


def _meets(rate: float, bound: float) -> bool:
    return 1 - rate >= (1 - RATE_SLACK) * (1 - bound)


def _edge_formula(m: Measurements) -> str:
    name = m.config.optimizer.name
    beta = 0.9 if m.momentum is None else m.momentum
    if name == "heavy_ball":
        return f"(2 + 2β)/S₀ with β = {_g(beta)}"
    if name == "nesterov":
        return f"(2 + 2β)/((1 + 2β)S₀) with β = {_g(beta)}"
    return "2/S₀"


def _holds(ok: bool) -> Status:
    return "holds" if ok else "fails"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def fit_r2(m: Measurements) -> str:
    """Return the R² of the loss-rate fit as text, saying so where the fit is rejected.

    Printed against the threshold :data:`~gdscope.stats.rates.RATE_MIN_R2` (never rounded onto
    it): ``0.9812``, or ``0.94997 < 0.95: fit rejected``.
    """
    r2 = m.loss_rate_r2
    shown = format_against(r2, RATE_MIN_R2, format_rate)
    if m.loss_rate_ok or math.isnan(r2):
        return shown
    if r2 < RATE_MIN_R2:
        return f"{shown} < {RATE_MIN_R2}: fit rejected"
    return f"{shown}, too few points: fit rejected"


def _drift(m: Measurements) -> str:
    return format_against(m.ntk_drift, LAZY_DRIFT, _g)


def _movement(m: Measurements) -> str:
    return format_against(m.weight_movement, LAZY_MOVEMENT, _g)


def _eta_s(m: Measurements) -> str:
    return format_against(m.lr * m.sharpness_max, 1.0, _g)


def _over_edge(m: Measurements) -> str:
    return format_against(m.lr / m.stability_edge, 1.0, _g)


def format_rate(value: float | None) -> str:
    """Format a per-step rate (or an R²): 4 significant digits, and 3 of its distance from 1 near 1.

    A contraction rate close to 1 is told apart by ``1 − ρ``: 4 significant digits printed
    0.99997 and 0.999998 both as ``1``.

    >>> format_rate(0.99997), format_rate(0.9999976), format_rate(1.00002), format_rate(0.5)
    ('0.99997', '0.9999976', '1.00002', '0.5')
    >>> format_rate(1.0), format_rate(float("nan")), format_rate(None)
    ('1', 'n/a', 'n/a')
    """
    if value is None or math.isnan(value):
        return "n/a"
    gap = abs(1.0 - value)
    if not (0.0 < gap < 0.01):
        return f"{value:.4g}"
    decimals = min(17, math.ceil(-math.log10(gap)) + 2)
    return f"{value:.{decimals}f}".rstrip("0")


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value
