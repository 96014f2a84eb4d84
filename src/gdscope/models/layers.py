r"""Linear and convolution layers with an explicit parameterization.

``ScaledLinear`` computes

.. math::  y = \alpha\, x W^\top + \alpha_b\, b,

with ``W`` and ``b`` ordinary ``nn.Parameter`` s drawn from ``N(0, σ_W²)`` and ``N(0, σ_b²)``
by an explicit ``torch.Generator``; ``α`` (``multiplier``), ``α_b`` (``bias_multiplier``) and the
learning-rate multipliers come from a :class:`~gdscope.models.parameterization.LayerSpec`.
``ScaledConv2d`` is the same for a stride-1 "same"-padded 2-D convolution. The layers declare
``lr_multipliers = {"weight": c_W, "bias": c_b}`` for
:func:`gdscope.models.lr_multipliers.lr_multipliers`.

Random numbers are drawn in float64 on the CPU and then cast and moved, so the same seed gives
the same parameters on every device, and float32 parameters are the rounded float64 ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .parameterization import LayerSpec

TIES: tuple[str, ...] = ("none", "rows", "columns", "all")


def _normal(
    shape: tuple[int, ...],
    std: float,
    tie: str,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Draw ``N(0, std²)`` entries, tied as ``tie`` says (see :class:`ScaledLinear`)."""
    if tie not in TIES:
        raise ValueError(f"tie must be one of {list(TIES)}, got {tie!r}")
    if std == 0.0:
        return torch.zeros(shape, dtype=dtype, device=device)
    draw_shape = shape
    if tie == "rows":
        draw_shape = (1, *shape[1:])
    elif tie == "columns" and len(shape) > 1:
        draw_shape = (shape[0], 1, *shape[2:])
    elif tie == "all":
        draw_shape = (1,) * len(shape)
        std = std / math.sqrt(math.prod(shape[1:]))
    sample = torch.randn(draw_shape, generator=generator, dtype=torch.float64) * std
    return sample.expand(shape).to(dtype=dtype, device=device).contiguous()


class _Scaled(nn.Module):
    """Shared parameter set-up of :class:`ScaledLinear` and :class:`ScaledConv2d`."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_parameters(
        self,
        weight_shape: tuple[int, ...],
        spec: LayerSpec,
        bias: bool,
        tie: str,
        generator: torch.Generator,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.spec = spec
        self.multiplier = float(spec.multiplier)
        self.bias_multiplier = float(spec.bias_multiplier)
        self.weight = nn.Parameter(
            _normal(weight_shape, spec.init_std, tie, generator, dtype, device)
        )
        self.lr_multipliers: dict[str, float] = {"weight": float(spec.lr_weight)}
        if bias:
            bias_tie = "rows" if tie in ("rows", "all") else "none"
            self.bias = nn.Parameter(
                _normal((weight_shape[0],), spec.bias_std, bias_tie, generator, dtype, device)
            )
            self.lr_multipliers["bias"] = float(spec.lr_bias)
        else:
            self.register_parameter("bias", None)

    def _add_bias(self, y: torch.Tensor, view: tuple[int, ...]) -> torch.Tensor:
        if self.multiplier != 1.0:
            y = self.multiplier * y
        if self.bias is None:
            return y
        return y + self.bias_multiplier * self.bias.view(view)


class ScaledLinear(_Scaled):
    r"""``y = multiplier · x Wᵀ + bias_multiplier · b`` with ``W`` of shape ``(out, in)``.

    Args:
        in_features: fan-in ``n``.
        out_features: number of output units.
        spec: init std, multipliers and lr multipliers (see ``Parameterization.layer``).
        bias: whether the layer has a bias.
        tie: ``"none"`` (i.i.d. entries), ``"rows"`` (every output unit gets the same incoming
            weights and bias: one random row copied), ``"columns"`` (every input unit gets
            the same outgoing weights: one random column copied) or ``"all"`` (one
            ``N(0, σ_W²/in_features)`` scalar fills ``W`` and one ``N(0, σ_b²)`` scalar fills
            ``b``, so that ``x Wᵀ`` has the variance it has under i.i.d. entries when the
            entries of ``x`` are equal).
        generator: source of randomness (CPU generator).
        dtype: floating dtype of the parameters.
        device: device of the parameters.

    Example:
        >>> from gdscope.models import get_parameterization
        >>> spec = get_parameterization("ntk").layer("hidden", fan_in=8)
        >>> layer = ScaledLinear(8, 4, spec, generator=torch.Generator().manual_seed(0))
        >>> layer(torch.ones(2, 8)).shape
        torch.Size([2, 4])

    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        spec: LayerSpec,
        *,
        bias: bool = True,
        tie: str = "none",
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        shape = (out_features, in_features)
        self._init_parameters(shape, spec, bias, tie, generator, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(..., in_features)`` to ``(..., out_features)``."""
        return self._add_bias(F.linear(x, self.weight), (-1,))

    def extra_repr(self) -> str:
        """Show sizes and multipliers."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"multiplier={self.multiplier:.4g}, bias={self.bias is not None}"
        )


class ScaledConv2d(_Scaled):
    r"""Stride-1, ``padding="same"`` convolution ``y = multiplier · (W ⋆ x) + bias_multiplier · b``.

    The fan-in of a unit is ``in_channels · kernel_size²``; ``spec`` must be built with it.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd or even square kernel side (``"same"`` padding either way).
        spec: init std, multipliers and lr multipliers.
        bias: whether the layer has a per-channel bias.
        generator: source of randomness (CPU generator).
        dtype: floating dtype of the parameters.
        device: device of the parameters.

    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        spec: LayerSpec,
        *,
        bias: bool = True,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self._init_parameters(shape, spec, bias, "none", generator, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(n, in_channels, H, W)`` to ``(n, out_channels, H, W)``."""
        return self._add_bias(F.conv2d(x, self.weight, padding="same"), (-1, 1, 1))

    def extra_repr(self) -> str:
        """Show sizes and multipliers."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"multiplier={self.multiplier:.4g}, bias={self.bias is not None}"
        )
