"""Per-parameter learning-rate multipliers declared by the modules that own the parameters.

A parameterization (SP, NTK, muP, mean-field) may ask for a layer-dependent learning rate
``lr_p = lr * c_p`` (Yang & Hu 2021, "Tensor Programs IV", Table 3). A module states ``c_p`` for
the parameters it owns directly in a plain ``dict`` attribute ``lr_multipliers``
(``{"weight": 8.0, "bias": 8.0}``); parameters of modules without it get ``c_p = 1``.
"""

from __future__ import annotations

from torch import nn


def lr_multipliers(model: nn.Module) -> dict[str, float]:
    """Return ``{qualified parameter name: lr multiplier}`` for every trainable parameter of ``model``.

    Args:
        model: any module; modules may declare ``lr_multipliers: dict[str, float]`` for their
            own (non-recursive) parameters.

    Returns:
        A dict in ``model.named_parameters()`` order, frozen parameters left out.

    """
    out: dict[str, float] = {}
    for module_name, module in model.named_modules():
        declared: dict[str, float] = getattr(module, "lr_multipliers", None) or {}
        for local, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                name = f"{module_name}.{local}" if module_name else local
                out[name] = float(declared.get(local, 1.0))
    order = [n for n, p in model.named_parameters() if p.requires_grad]
    return {n: out[n] for n in order}
