"""Statistics of measured series: numpy and scipy only, no torch; nothing here judges a claim.

* Lines and power laws (:mod:`~gdscope.stats.fits`): ``slope_fit``, ``loglog_fit`` with R² and
  the slope's standard error.
* Rates (:mod:`~gdscope.stats.rates`): ``fit_linear_rate`` (log-linear decay with an automatic
  window), ``steps_to_epsilon``.
* Trends over seeds (:mod:`~gdscope.stats.trends`): exponents and slopes with bootstrap CIs over
  seeds (``exponent_over_seeds``, ``slope_over_seeds``), Spearman with allowed inversions.

The pass/fail rule that reads these numbers lives in :mod:`gdscope.studies`.
"""

from gdscope.stats.fits import LinearFit, PowerFit, loglog_fit, slope_fit
from gdscope.stats.rates import RateFit, fit_linear_rate, steps_to_epsilon
from gdscope.stats.trends import (
    MonotoneFit,
    SeedCI,
    exponent_over_seeds,
    slope_over_seeds,
    spearman,
)

__all__ = [
    "LinearFit",
    "MonotoneFit",
    "PowerFit",
    "RateFit",
    "SeedCI",
    "exponent_over_seeds",
    "fit_linear_rate",
    "loglog_fit",
    "slope_fit",
    "slope_over_seeds",
    "spearman",
    "steps_to_epsilon",
]
