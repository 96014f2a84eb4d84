"""Trial kinds beyond the network trial: kernel-level dynamics, test objectives, the lasso.

Each kind is a frozen pydantic config (``kind`` discriminator, ``seed``, ``dtype``,
``content_hash()``) and a ``run(config) -> gdscope.training.Trace``, deterministic in the config.

* ``kernel_dynamics`` (seed 003): residual recursions of GD / NAG / heavy ball with the Gram
  ``H∞`` or the empirical NTK (:mod:`~gdscope.trials.kernel_dynamics`).
* ``objective`` (seed 002): optimizers on ``|x|``, ``|x|^p``, pseudo-Huber, ``½x²`` and the
  scalar L1 problem (:mod:`~gdscope.trials.objective`).
* ``lasso`` (seed 002): subgradient, ISTA and FISTA against an exact solver
  (:mod:`~gdscope.trials.lasso`).

:data:`TRIAL_KINDS` maps each ``kind`` to ``(config class, run function)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gdscope.training import Trace
from gdscope.trials.kernel_dynamics import KernelDataConfig, KernelDynamicsConfig
from gdscope.trials.kernel_dynamics import run as run_kernel_dynamics
from gdscope.trials.lasso import LassoConfig, LassoDataConfig
from gdscope.trials.lasso import run as run_lasso
from gdscope.trials.objective import ObjectiveConfig
from gdscope.trials.objective import run as run_objective

__all__ = [
    "TRIAL_KINDS",
    "KernelDataConfig",
    "KernelDynamicsConfig",
    "LassoConfig",
    "LassoDataConfig",
    "ObjectiveConfig",
    "run_kernel_dynamics",
    "run_lasso",
    "run_objective",
]

TRIAL_KINDS: dict[str, tuple[type[Any], Callable[[Any], Trace]]] = {
    "kernel_dynamics": (KernelDynamicsConfig, run_kernel_dynamics),
    "objective": (ObjectiveConfig, run_objective),
    "lasso": (LassoConfig, run_lasso),
}
"""``kind`` → ``(config class, run(config) -> Trace)``."""
