"""Instruments: functions from (model, data) to numbers. They never log, plot or write.

* NTK (:mod:`~gdscope.probes.ntk`): ``ntk_gram``, ``ntk_spectrum``, ``kernel_drift``,
  ``kernel_target_alignment``, ``h_infinity``.
* Hessian (:mod:`~gdscope.probes.hessian`): ``sharpness``, ``hessian_topk``, ``power_iteration``,
  ``hessian_trace``, ``output_hessian_norm``, ``hessian_operator``.
* Geometry (:mod:`~gdscope.probes.geometry`): gradient norm, PL ratio, the square-loss sandwich,
  distance from initialization, activation-pattern flips, linearization gap.
* Fits (:mod:`~gdscope.probes.fits`, :mod:`~gdscope.probes.rates`,
  :mod:`~gdscope.probes.trends`): lines and power laws, linear-rate fits, steps-to-ε, exponents
  with bootstrap CIs over seeds, Spearman with allowed inversions, band verdicts.
* Scheduling inside ``gdscope.train``: :data:`~gdscope.probes.tracking.PROBES`.
"""

from gdscope.probes.fits import LinearFit, PowerFit, loglog_fit, slope_fit
from gdscope.probes.geometry import (
    Sandwich,
    activation_flips,
    activation_pattern,
    distance_from_init,
    gradient_norm,
    linearization_gap,
    linearized_prediction,
    loss_and_grad_norm,
    per_neuron_displacement,
    pl_ratio,
    square_loss_sandwich,
)
from gdscope.probes.hessian import (
    hessian_operator,
    hessian_topk,
    hessian_trace,
    output_hessian_norm,
    power_iteration,
    sharpness,
)
from gdscope.probes.lanczos import EigResult, lanczos_topk
from gdscope.probes.ntk import (
    NTKSpectrum,
    gram_eigs,
    h_infinity,
    kernel_drift,
    kernel_target_alignment,
    ntk_gram,
    ntk_spectrum,
)
from gdscope.probes.rates import RateFit, fit_linear_rate, steps_to_epsilon
from gdscope.probes.tracking import PROBES, ProbeContext
from gdscope.probes.trends import (
    MonotoneFit,
    SeedCI,
    band_verdict,
    exponent_over_seeds,
    slope_over_seeds,
    spearman,
)

__all__ = [
    "PROBES",
    "EigResult",
    "LinearFit",
    "MonotoneFit",
    "NTKSpectrum",
    "PowerFit",
    "ProbeContext",
    "RateFit",
    "Sandwich",
    "SeedCI",
    "activation_flips",
    "activation_pattern",
    "band_verdict",
    "distance_from_init",
    "exponent_over_seeds",
    "fit_linear_rate",
    "gradient_norm",
    "gram_eigs",
    "h_infinity",
    "hessian_operator",
    "hessian_topk",
    "hessian_trace",
    "kernel_drift",
    "kernel_target_alignment",
    "lanczos_topk",
    "linearization_gap",
    "linearized_prediction",
    "loglog_fit",
    "loss_and_grad_norm",
    "ntk_gram",
    "ntk_spectrum",
    "output_hessian_norm",
    "per_neuron_displacement",
    "pl_ratio",
    "power_iteration",
    "sharpness",
    "slope_fit",
    "slope_over_seeds",
    "spearman",
    "square_loss_sandwich",
    "steps_to_epsilon",
]
