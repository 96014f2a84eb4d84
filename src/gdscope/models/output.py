r"""Wrappers on a network's output: a nonlinear output layer, and Chizat–Bach lazy scaling.

.. math::

    \text{OutputActivation:}\quad \tilde f(x) = φ\big(f(x)\big), \qquad
    \text{LazyOutput:}\quad f_α(x) = α\,\big(f(x) − f_0(x)\big) \;\text{(centred)}
    \quad\text{or}\quad α\, f(x),

with ``f₀`` a frozen copy of ``f`` at initialization, so that the centred model outputs 0 at
init whatever ``α``. Chizat, Oyallon & Bach (2019, "On lazy training in differentiable
programming", §2) train ``f_α`` on ``R(f_α)/α²`` and show ``‖w_T − w₀‖ = O(1/α)``: the larger
``α``, the lazier (more kernel-like) the training. For gradient descent on the square loss,
minimizing ``R(f_α)/α²`` with step ``η`` is the same as minimizing ``R(f_α)`` with step ``η/α²``.
``OutputActivation`` is the "nonlinear output layer" of Liu, Zhu & Belkin (2020, "On the
linearity of large non-linear models", §4), whose Hessian does not vanish with width.

Both are ordinary ``nn.Module`` s: the frozen copy's parameters have ``requires_grad=False``, so
``params_of``, optimizers, the NTK and Hessian probes see only the live network's parameters.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gdscope import _checks as check

from .activations import ACTIVATIONS, get_activation


class OutputActivation(nn.Module):
    """``x ↦ φ(net(x))``: a nonlinear output layer on top of ``net``.

    Attributes:
        net: the wrapped network.
        activation: ``φ``.
        name: the activation's name.

    """

    def __init__(self, net: nn.Module, activation: str) -> None:
        super().__init__()
        self.name = check.one_of("output_activation", activation, sorted(ACTIVATIONS))
        self.net = net
        self.activation = get_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``φ(net(x))``, same shape as ``net(x)``."""
        return self.activation(self.net(x))


class LazyOutput(nn.Module):
    """``x ↦ α·(net(x) − net₀(x))`` (``center``) or ``α·net(x)``; ``net₀`` frozen at construction.

    Attributes:
        net: the trained network.
        reference: frozen deep copy of ``net`` at construction (``None`` without centring).
        scale: ``α``.

    """

    def __init__(self, net: nn.Module, scale: float, center: bool) -> None:
        super().__init__()
        self.scale = check.positive_float("output_scale", scale)
        self.net = net
        self.reference = copy.deepcopy(net).requires_grad_(False) if center else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``α·(f(x) − f₀(x))`` (or ``α·f(x)``), same shape as ``net(x)``."""
        out = self.net(x)
        if self.reference is not None:
            out = out - self.reference(x)
        return out if self.scale == 1.0 else self.scale * out


def wrap_output(
    net: nn.Module,
    *,
    activation: str = "identity",
    scale: float = 1.0,
    center: bool = False,
) -> nn.Module:
    r"""Return ``net`` with an output activation and lazy scaling, or ``net`` itself if neither.

    The result is ``α·(φ(f(x)) − φ(f₀(x)))`` with ``center``, else ``α·φ(f(x))``: the
    activation belongs to the network, the centring and scale act on the network's output.

    Args:
        net: the network ``f``.
        activation: ``φ``, one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        scale: ``α > 0`` (finite).
        center: subtract a frozen copy's output, so the output at init is 0.

    Raises:
        ValueError: unknown activation, or a scale that is not a finite number > 0.

    Example:
        >>> from gdscope.models import mlp
        >>> f = wrap_output(mlp(4, 16, depth=2, seed=0), scale=10.0, center=True)
        >>> float(f(torch.randn(3, 4)).detach().abs().max())
        0.0

    """
    check.one_of("output_activation", activation, sorted(ACTIVATIONS))
    scale = check.positive_float("output_scale", scale)
    if not isinstance(center, bool):
        raise ValueError(f"center_output must be true or false, got {center!r}")
    if activation != "identity":
        net = OutputActivation(net, activation)
    if scale != 1.0 or center:
        net = LazyOutput(net, scale, center)
    return net
