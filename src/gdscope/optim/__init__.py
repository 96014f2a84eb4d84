"""Optimizers: torch.optim for the classics, gdscope's own only where torch has none.

:func:`make_optimizer` maps a study's optimizer name to a ``torch.optim.Optimizer``
(``gd``/``sgd``, ``heavy_ball``, ``nesterov``, ``rmsprop``, ``adam`` from torch;
``prox_gd``/``ista``, ``fista``, ``subgradient`` from here), turning per-parameter
learning-rate multipliers into param groups.
"""

from gdscope.optim.proximal import FISTA, ProximalGD, soft_threshold
from gdscope.optim.registry import ALIASES, OPTIMIZERS, make_optimizer, param_groups
from gdscope.optim.subgradient import SCHEDULES, Subgradient

__all__ = [
    "ALIASES",
    "FISTA",
    "OPTIMIZERS",
    "SCHEDULES",
    "ProximalGD",
    "Subgradient",
    "make_optimizer",
    "param_groups",
    "soft_threshold",
]
