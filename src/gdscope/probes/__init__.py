"""Instruments: functions from (model, data) to numbers. They never log, plot or write.

* NTK (:mod:`~gdscope.probes.ntk`): ``ntk_gram``, ``ntk_method``, ``ntk_spectrum``,
  ``kernel_drift``, ``kernel_target_alignment``, ``h_infinity``.
* Infinite width (:mod:`~gdscope.probes.infinite_width`): ``ntk_infinite`` (NNGP and NTK of MLPs).
* Hessian density (:mod:`~gdscope.probes.spectral_density`): ``hessian_spectral_density``,
  ``spectral_density`` (stochastic Lanczos quadrature).
* Hessian (:mod:`~gdscope.probes.hessian`): ``sharpness``, ``hessian_topk``, ``power_iteration``,
  ``hessian_trace``, ``output_hessian_norm``, ``hessian_operator`` (``params=`` selects a block).
* Gauss–Newton (:mod:`~gdscope.probes.gauss_newton`): ``ggn_sharpness``, ``ggn_operator``.
* Adaptive methods (:mod:`~gdscope.probes.preconditioned`): ``preconditioned_sharpness``
  (``λ_max(P⁻¹H)`` of an Adam/RMSprop state), ``preconditioner_diagonal``,
  ``adaptive_stability_threshold``.
* Trace (:mod:`~gdscope.probes.trace`): ``hessian_trace_hutchpp``, ``hutchpp`` (Hutch++).
* Geometry (:mod:`~gdscope.probes.geometry`): gradient norm, PL ratio, the square-loss sandwich,
  distance from initialization, activation-pattern flips, linearization gap.
* Coordinate check (:mod:`~gdscope.probes.coord_hooks`): ``coordinate_check`` of any model by
  forward hooks (RMS of module outputs and of their change against width; ``CoordCheck``).
* Fits (:mod:`~gdscope.stats.fits`, :mod:`~gdscope.stats.rates`,
  :mod:`~gdscope.stats.trends`): lines and power laws, linear-rate fits, steps-to-ε, exponents
  with bootstrap CIs over seeds, Spearman with allowed inversions, band verdicts.
* The probes ``gdscope.train`` schedules by name are in :mod:`gdscope.training` (``PROBES``).
"""

# Exports load on first use (names and types: __init__.pyi), so that
# reading a store or writing a report never imports torch.
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
