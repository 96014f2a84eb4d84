"""Instruments: functions from (model, data) to numbers. They never log, plot or write.

* NTK (:mod:`~gdscope.probes.ntk`): ``ntk_gram``, ``ntk_spectrum``, ``kernel_drift``,
  ``kernel_target_alignment``, ``h_infinity``.
* Hessian (:mod:`~gdscope.probes.hessian`): ``sharpness``, ``hessian_topk``, ``power_iteration``,
  ``hessian_trace``, ``output_hessian_norm``, ``hessian_operator``.
* Geometry (:mod:`~gdscope.probes.geometry`): gradient norm, PL ratio, the square-loss sandwich,
  distance from initialization, activation-pattern flips, linearization gap.
* Fits (:mod:`~gdscope.stats.fits`, :mod:`~gdscope.stats.rates`,
  :mod:`~gdscope.stats.trends`): lines and power laws, linear-rate fits, steps-to-ε, exponents
  with bootstrap CIs over seeds, Spearman with allowed inversions, band verdicts.
* The probes ``gdscope.train`` schedules by name are in :mod:`gdscope.training` (``PROBES``).
"""

# Exports load on first use (names and types: __init__.pyi), so that
# reading a store or writing a report never imports torch.
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
