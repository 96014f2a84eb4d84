r"""Per-parameter learning-rate multipliers declared by the modules that own the parameters.

A parameterization (SP, NTK, μP, mean-field) may ask for a layer-dependent learning rate
``lr_p = lr · c_p``, and the multipliers depend on the optimizer's *rule*:

* ``"sgd"``: optimizers whose update is linear in the gradient (GD, heavy ball, Nesterov,
  proximal GD, FISTA, subgradient). μP's are those of Yang & Hu (2021), "Tensor Programs IV",
  Table 3 (``mup.MuSGD``): ``c = r`` for vector-like parameters, ``1`` for hidden weights.
* ``"adaptive"``: optimizers that divide the gradient entrywise by a running RMS (Adam, AdamW,
  RMSProp), whose update ``η · m̂/(√v̂ + ε)`` has entries ``Θ(η)`` whatever the gradient's scale.
  μP's are those of Yang et al. (2022), "Tensor Programs V", Table 3 / Table 8
  (``mup.MuAdam``): ``c = 1/r`` for hidden (matrix-like) weights, ``1`` for everything else.

A module states ``c_p`` for the parameters it owns directly in a plain ``dict`` attribute
``lr_multipliers`` (``{"weight": 8.0, "bias": 8.0}``), which holds for every optimizer unless
the module also declares ``adaptive_lr_multipliers`` for the adaptive rule. gdscope's own
layers (:class:`~gdscope.models.layers.ScaledLinear`, ``ScaledConv2d``) carry their
:class:`~gdscope.models.parameterization.LayerSpec` as ``spec`` and take both rules from it; a
parameterization without an adaptive rule (``meanfield``) raises :class:`MissingLRRuleError`.
Parameters of modules that declare nothing get ``c_p = 1``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .parameterization import LayerSpec

LR_RULES: tuple[str, ...] = ("sgd", "adaptive")


class MissingLRRuleError(ValueError):
    """A layer's parameterization defines no learning-rate multipliers for ``rule``."""

    def __init__(self, parameterization: str, rule: str) -> None:
        self.parameterization = parameterization
        self.rule = rule
        super().__init__(
            f"parameterization {parameterization!r} has no learning-rate rule for {rule} optimizers"
        )


def _declared(module: nn.Module, rule: str) -> dict[str, Any]:
    """Return the multipliers ``module`` declares for its own parameters under ``rule``."""
    generic: dict[str, Any] = getattr(module, "lr_multipliers", None) or {}
    if rule == "sgd":
        return generic
    own = getattr(module, "adaptive_lr_multipliers", None)
    if own is not None:
        return own
    spec = getattr(module, "spec", None)
    if isinstance(spec, LayerSpec):
        weight, bias = spec.adaptive_lr_weight, spec.adaptive_lr_bias
        if weight is None or bias is None:
            raise MissingLRRuleError(spec.parameterization, rule)
        return {"weight": weight, "bias": bias}
    return generic


def lr_multipliers(model: nn.Module, rule: str = "sgd") -> dict[str, float]:
    """Return ``{qualified parameter name: lr multiplier}`` for every trainable parameter of ``model``.

    Args:
        model: any module; modules may declare ``lr_multipliers: dict[str, float]`` (and
            ``adaptive_lr_multipliers``) for their own (non-recursive) parameters.
        rule: ``"sgd"`` (optimizers linear in the gradient) or ``"adaptive"`` (Adam, AdamW,
            RMSProp); see the module docstring.

    Returns:
        A dict in ``model.named_parameters()`` order, frozen parameters left out.

    Raises:
        ValueError: an unknown ``rule``.
        MissingLRRuleError: a gdscope layer whose parameterization has no rule for ``rule``.

    Example:
        >>> from gdscope.models import mlp
        >>> net = mlp(3, 256, depth=3, parameterization="mup", base_width=64)
        >>> [lr_multipliers(net, rule)["layers.1.weight"] for rule in LR_RULES]
        [1.0, 0.25]

    """
    if rule not in LR_RULES:
        raise ValueError(f"rule must be one of {list(LR_RULES)}, got {rule!r}")
    out: dict[str, float] = {}
    for module_name, module in model.named_modules():
        params = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not params:
            continue
        declared = _declared(module, rule)
        for local, _ in params:
            name = f"{module_name}.{local}" if module_name else local
            out[name] = float(declared.get(local, 1.0))
    order = [n for n, p in model.named_parameters() if p.requires_grad]
    return {n: out[n] for n in order}
