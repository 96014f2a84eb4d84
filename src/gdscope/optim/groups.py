r"""Param groups from a model's per-parameter learning-rate multipliers, by optimizer rule.

A parameterization asks for ``η_p = η · c_p`` (:mod:`gdscope.models.lr_multipliers`), and
``c_p`` depends on how the optimizer's update scales with the gradient:

* rule ``"sgd"``: the update is linear in the gradient (``gd``/``sgd``, ``heavy_ball``,
  ``nesterov``, ``prox_gd``, ``fista``, ``subgradient``). μP's multipliers are Yang & Hu (2021),
  "Tensor Programs IV", Table 3, as ``mup.MuSGD``: ``c = r`` for vector-like parameters (input
  weights, biases of width-sized layers, the readout weight), ``1`` for hidden weights.
* rule ``"adaptive"``: the gradient is divided entrywise by a running RMS (``adam``,
  ``rmsprop``; ``torch.optim.AdamW``). The update is then ``Θ(η)`` per entry whatever the
  gradient's scale, so a hidden weight ``W ∈ ℝ^{n×n}`` moves the features by
  ``ΔW x = Θ(η n)`` (its ``n`` entries per row align with ``x``) and needs ``c = 1/r``, while a
  vector-like one moves them by ``Θ(η)`` and keeps ``c = 1`` (the readout through its ``1/r``
  forward multiplier). These are Yang et al. (2022), "Tensor Programs V", Table 3 (Table 8 in
  the readout-multiplier form gdscope's ``mup`` takes), as ``mup.MuAdam`` implements them; with
  the SGD multipliers instead the readout's update grows like ``r``.

Under either rule a group's weight decay is ``λ_p = λ / c_p``, so that the decay per step
``η_p λ_p = η λ`` is the base width's, as ``mup.MuSGD``, ``MuAdam`` and ``MuAdamW`` scale it
(for mean-field SGD, ``c = m``, it is the decay of the regularizer ``λ/2 · (1/m) Σ_i ‖θ_i‖²``
averaged over the units, as the mean-field objective holds it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gdscope.models.lr_multipliers import LR_RULES, MissingLRRuleError, lr_multipliers

SGD_LIKE = ("gd", "sgd", "heavy_ball", "nesterov")


def rule_groups(
    model: nn.Module,
    lr: float,
    rule: str,
    *,
    optimizer: str,
    weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Return one param group per distinct learning-rate multiplier ``c`` of ``model`` under ``rule``.

    Each group is ``{"params": [...], "lr": lr * c, "lr_multiplier": c}``, plus
    ``"weight_decay": weight_decay / c`` when ``weight_decay`` is given; groups in order of
    first appearance in ``model.named_parameters()``, frozen parameters left out.

    Args:
        model: the model whose modules declare the multipliers.
        lr: base step size ``η``.
        rule: ``"sgd"`` or ``"adaptive"`` (see the module docstring).
        optimizer: the optimizer's name, for the error message.
        weight_decay: the optimizer's weight decay ``λ``; ``None`` leaves it to the optimizer.

    Raises:
        ValueError: an unknown ``rule``, or a parameterization without a rule for ``rule``
            (``meanfield`` under an adaptive optimizer).

    """
    if rule not in LR_RULES:
        raise ValueError(f"rule must be one of {list(LR_RULES)}, got {rule!r}")
    try:
        multipliers = lr_multipliers(model, rule)
    except MissingLRRuleError as err:
        raise ValueError(
            f"optimizer {optimizer!r} has no learning-rate rule under parameterization "
            f"{err.parameterization!r} (its lr multipliers are for SGD-like optimizers; on an "
            f"{rule} optimizer they would scale the step with the width): use one of "
            f"{list(SGD_LIKE)}, or parameterization 'mup', which has a rule for {optimizer!r}"
        ) from None
    named = dict(model.named_parameters())
    grouped: dict[float, list[torch.Tensor]] = {}
    for name, c in multipliers.items():
        grouped.setdefault(c, []).append(named[name])
    groups: list[dict[str, Any]] = []
    for c, params in grouped.items():
        group: dict[str, Any] = {"params": params, "lr": lr * c, "lr_multiplier": c}
        if weight_decay is not None:
            group["weight_decay"] = weight_decay / c if c > 0 else weight_decay
        groups.append(group)
    return groups
