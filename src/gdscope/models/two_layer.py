r"""The two-layer network of Du, Zhai, Poczós & Singh (2019).

.. math::

    f(x) = \frac{1}{\sqrt m} \sum_{r=1}^m a_r\, σ(w_r^\top x), \qquad
    w_r \sim \mathcal N(0, κ^2 I_d), \quad a_r \sim \mathrm{Unif}\{-1, +1\},

with ``σ = ReLU`` and ``κ = init_scale = 1`` in the paper, where the outer weights ``a`` are
fixed and only ``W`` is trained ("Gradient descent provably optimizes over-parameterized neural
networks", ICLR 2019, eq. (2)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gdscope import _checks as check

from .activations import ACTIVATIONS, get_activation


class TwoLayer(nn.Module):
    """``f(x) = m^{-1/2} Σ_r a_r σ(w_rᵀ x)``; build it with :func:`two_layer`.

    Attributes:
        weight: ``(m, d)`` inner weights ``w_r`` (a trainable parameter).
        outer: ``(m,)`` outer weights ``a_r``: a buffer when frozen, a parameter otherwise.
        multiplier: ``m^{-1/2}``.
        activation: the activation module.

    """

    outer: torch.Tensor

    def __init__(
        self, weight: torch.Tensor, outer: torch.Tensor, activation: nn.Module, train_outer: bool
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        if train_outer:
            self.outer = nn.Parameter(outer)
        else:
            self.register_buffer("outer", outer)
        self.activation = activation
        self.multiplier = 1.0 / math.sqrt(weight.shape[0])

    @property
    def width(self) -> int:
        """Number of hidden units ``m``."""
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, d)`` to outputs ``(n, 1)``."""
        hidden = self.activation(F.linear(x, self.weight))  # (n, m)
        return self.multiplier * (hidden @ self.outer).unsqueeze(-1)


def two_layer(
    d_in: int,
    width: int,
    *,
    train_outer: bool = False,
    activation: str = "relu",
    init_scale: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> TwoLayer:
    """Build the Du et al. (2019) two-layer network with ``width`` hidden units.

    The sizes come first; every option is a keyword, named as in :func:`~gdscope.models.mlp`.

    Args:
        d_in: input dimension ``d``.
        width: number of hidden units ``m``.
        train_outer: make ``a`` a trainable parameter (default: a frozen buffer, as in the paper).
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        init_scale: ``κ``, the std of the entries of ``w_r``.
        seed: seed of the generator drawing ``W`` then ``a`` (the global RNG is not used).
        dtype: floating dtype.
        device: device.

    Returns:
        A :class:`TwoLayer` mapping ``(n, d_in)`` to ``(n, 1)``.

    Raises:
        ValueError: on a non-positive size or scale, or an unknown activation.

    Example:
        >>> net = two_layer(d_in=16, width=4096, seed=0)
        >>> [name for name, _ in net.named_parameters()]
        ['weight']

    """
    d_in = check.positive_int("d_in", d_in)
    width = check.positive_int("width", width)
    check.one_of("activation", activation, ACTIVATIONS)
    init_scale = check.positive_float("init_scale", init_scale)
    dtype = check.floating_dtype(dtype)
    device = check.device(device)
    generator = check.generator(seed)
    weight = torch.randn(width, d_in, generator=generator, dtype=torch.float64) * init_scale
    signs = torch.randint(0, 2, (width,), generator=generator, dtype=torch.int64)
    outer = (2 * signs - 1).to(torch.float64)
    return TwoLayer(
        weight.to(dtype=dtype, device=device),
        outer.to(dtype=dtype, device=device),
        get_activation(activation),
        bool(train_outer),
    )
