"""Instruments: functions from (model, data) to numbers. They never log, plot or write.

* NTK (:mod:`~gdscope.probes.ntk`): ``ntk_gram``, ``ntk_method``, ``ntk_spectrum``,
  ``kernel_drift``, ``kernel_target_alignment``, ``h_infinity``.
* Infinite width (:mod:`~gdscope.probes.infinite_width`): ``ntk_infinite`` (NNGP and NTK of MLPs),
  ``mlp_kernels`` (those of the distribution a given ``mlp`` was drawn from);
  :mod:`~gdscope.probes.infinite_dynamics`: ``infinite_width_gd`` and ``InfiniteWidthGD`` (that
  NTK's model trained by GD, on the training inputs and off them).
* Hessian density (:mod:`~gdscope.probes.spectral_density`): ``hessian_spectral_density``,
  ``spectral_density`` (stochastic Lanczos quadrature).
* Hessian (:mod:`~gdscope.probes.hessian`): ``sharpness``, ``hessian_topk``, ``power_iteration``,
  ``hessian_trace``, ``hessian_operator`` (``params=`` selects a block); ``allow_batch_statistics``
  (measure training-mode batch norm on one fixed batch), ``refuse_random_modules`` (the
  check every probe runs: no dropout or batch statistics in training mode);
  :mod:`~gdscope.probes.output_hessian`: ``output_hessian_norm``.
* Gauss–Newton (:mod:`~gdscope.probes.gauss_newton`): ``ggn_sharpness``, ``ggn_operator``.
* Adaptive methods (:mod:`~gdscope.probes.preconditioned`): ``preconditioned_sharpness``
  (``λ_max(P⁻¹H)`` of an Adam/RMSprop state), ``preconditioner_diagonal``,
  ``adaptive_stability_threshold``.
* Trace (:mod:`~gdscope.probes.trace`): ``hessian_trace_hutchpp``, ``hutchpp`` (Hutch++).
* Geometry (:mod:`~gdscope.probes.geometry`): gradient norm, PL ratio, the square-loss sandwich,
  distance from initialization, activation-pattern flips; the linearization gap
  (:mod:`~gdscope.probes.linearization`).
* Coordinate check (:mod:`~gdscope.probes.coord_hooks`): ``coordinate_check`` of any model by
  forward hooks (RMS of module outputs and of their change against width; ``CoordCheck``).
* Fits (:mod:`~gdscope.stats.fits`, :mod:`~gdscope.stats.rates`,
  :mod:`~gdscope.stats.trends`): lines and power laws, linear-rate fits, steps-to-ε, exponents
  with bootstrap CIs over seeds, Spearman with allowed inversions, band verdicts.
* The probes ``gdscope.train`` schedules by name are in :mod:`gdscope.training` (``PROBES``).
"""

from gdscope.probes._checks import allow_batch_statistics, refuse_random_modules
from gdscope.probes._spare import release_spare
from gdscope.probes.coord_hooks import CoordCheck, CoordRow, coordinate_check
from gdscope.probes.gauss_newton import GGNOperator, ggn_operator, ggn_sharpness
from gdscope.probes.geometry import (
    Sandwich,
    activation_flips,
    activation_pattern,
    distance_from_init,
    gradient_norm,
    loss_and_grad_norm,
    per_neuron_displacement,
    pl_ratio,
    square_loss_sandwich,
)
from gdscope.probes.hessian import (
    hessian_operator,
    hessian_topk,
    hessian_trace,
    power_iteration,
    sharpness,
)
from gdscope.probes.infinite_dynamics import InfiniteWidthGD, infinite_width_gd
from gdscope.probes.infinite_width import InfiniteWidthKernels, mlp_kernels, ntk_infinite
from gdscope.probes.lanczos import EigResult, lanczos_topk
from gdscope.probes.linearization import linearization_gap, linearized_prediction
from gdscope.probes.ntk import (
    NTKSpectrum,
    gram_eigs,
    h_infinity,
    kernel_drift,
    kernel_target_alignment,
    ntk_gram,
    ntk_method,
    ntk_spectrum,
)
from gdscope.probes.output_hessian import output_hessian_norm
from gdscope.probes.preconditioned import (
    adaptive_stability_threshold,
    preconditioned_sharpness,
    preconditioner_diagonal,
)
from gdscope.probes.spectral_density import (
    SpectralDensity,
    hessian_spectral_density,
    spectral_density,
)
from gdscope.probes.trace import hessian_trace_hutchpp, hutchpp

__all__ = [
    "CoordCheck",
    "CoordRow",
    "EigResult",
    "GGNOperator",
    "InfiniteWidthGD",
    "InfiniteWidthKernels",
    "NTKSpectrum",
    "Sandwich",
    "SpectralDensity",
    "activation_flips",
    "activation_pattern",
    "adaptive_stability_threshold",
    "allow_batch_statistics",
    "coordinate_check",
    "distance_from_init",
    "ggn_operator",
    "ggn_sharpness",
    "gradient_norm",
    "gram_eigs",
    "h_infinity",
    "hessian_operator",
    "hessian_spectral_density",
    "hessian_topk",
    "hessian_trace",
    "hessian_trace_hutchpp",
    "hutchpp",
    "infinite_width_gd",
    "kernel_drift",
    "kernel_target_alignment",
    "lanczos_topk",
    "linearization_gap",
    "linearized_prediction",
    "loss_and_grad_norm",
    "mlp_kernels",
    "ntk_gram",
    "ntk_infinite",
    "ntk_method",
    "ntk_spectrum",
    "output_hessian_norm",
    "per_neuron_displacement",
    "pl_ratio",
    "power_iteration",
    "preconditioned_sharpness",
    "preconditioner_diagonal",
    "refuse_random_modules",
    "release_spare",
    "sharpness",
    "spectral_density",
    "square_loss_sandwich",
]
