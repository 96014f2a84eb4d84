r"""A small convolutional ResNet whose identity paths can be switched off.

Pre-activation blocks (He et al. 2016, "Identity mappings in deep residual networks"):

.. math::

    h_0 = C_0 x, \qquad
    h_{l} = s\, h_{l-1} + β\, C_{l,2}\, σ\big(N_{l,2}\, C_{l,1}\, σ(N_{l,1} h_{l-1})\big), \qquad
    f(x) = L\Big(\operatorname{mean}_{i,j} σ(h_D)[:, i, j]\Big) \;\text{(pool)} \quad\text{or}\quad
    f(x) = L\big(\operatorname{vec} σ(h_D)\big) \;\text{(flatten)},

with ``s = 1`` (``skip=True``) or ``s = 0`` (``skip=False``: the same network, same parameters,
without the identity path), ``N`` BatchNorm or the identity (default: no BatchNorm), stride-1
same-padded :class:`~gdscope.models.layers.ScaledConv2d` convolutions and a linear readout ``L``.
With skips the branch scale defaults to ``β = 1/√D`` (Hayou et al. 2021, "Stable ResNet"), so
the residual stream's variance stays bounded in depth. The ``"flatten"`` readout (a weight per
position, fan-in ``width · H · W``) is the output layer of Allen-Zhu, Li & Song (2019, "A
convergence theory for deep learning via over-parameterization"); ``"pool"`` is the default.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gdscope import _checks as check

from .activations import get_activation
from .cnn import READOUTS, check_image_size, conv_layers, read_features
from .layers import ScaledConv2d, ScaledLinear
from .parameterization import Parameterization


class ResidualBlock(nn.Module):
    """``h ↦ s·h + β·conv2(σ(N2(conv1(σ(N1(h))))))`` with ``s ∈ {0, 1}``."""

    def __init__(
        self,
        conv1: ScaledConv2d,
        conv2: ScaledConv2d,
        norm1: nn.Module,
        norm2: nn.Module,
        activation: nn.Module,
        skip: bool,
        branch_scale: float,
    ) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2
        self.norm1, self.norm2 = norm1, norm2
        self.activation = activation
        self.skip = skip
        self.branch_scale = branch_scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Map ``(n, c, H, W)`` to ``(n, c, H, W)``."""
        branch = self.conv1(self.activation(self.norm1(h)))
        branch = self.branch_scale * self.conv2(self.activation(self.norm2(branch)))
        return h + branch if self.skip else branch


class ResNet(nn.Module):
    """Stem conv, residual blocks, pooled or flattened readout; build it with :func:`resnet`."""

    def __init__(
        self,
        stem: ScaledConv2d,
        blocks: list[ResidualBlock],
        readout: ScaledLinear,
        activation: nn.Module,
        image_size: tuple[int, int],
        pooling: str = "pool",
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.readout = readout
        self.activation = activation
        self.in_channels = stem.in_channels
        self.image_size = image_size
        self.pooling = check.one_of("readout", pooling, READOUTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(n, C, H, W)`` to logits ``(n, out_dim)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (n, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        check_image_size(x, self.image_size, self.pooling)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(read_features(self.activation(h), self.pooling))


def resnet(
    in_channels: int,
    image_size: int | tuple[int, int],
    width: int,
    out_dim: int,
    *,
    depth: int = 2,
    skip: bool = True,
    batchnorm: bool = False,
    branch_scale: float | None = None,
    activation: str = "relu",
    parameterization: str | Parameterization = "standard",
    kernel_size: int = 3,
    init_scale: float = 1.0,
    base_width: int = 64,
    readout: str = "pool",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ResNet:
    """Build a ResNet with ``depth`` two-conv residual blocks of ``width`` channels.

    Args:
        in_channels: channels of the input images.
        image_size: ``H`` (square images) or ``(H, W)``; inputs are ``(n, C, H, W)``.
        width: channels of the stem and of every block.
        out_dim: outputs of the readout (classes, or 1 for a scalar output).
        depth: number of residual blocks ``D``.
        skip: keep the identity paths (``False``: the same net without them).
        batchnorm: put BatchNorm before each activation inside the blocks.
        branch_scale: ``β``; default ``1/√depth`` with skips and ``1`` without.
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        parameterization: ``standard``, ``ntk``, ``mup``, ``meanfield`` or a ``Parameterization``
            (stem: input rule, block convs: hidden rule, readout: output rule).
        kernel_size: side of the square kernels.
        init_scale: factor on every weight's init std.
        base_width: channel count at which μP equals standard.
        readout: ``"pool"`` (global average pool, readout fan-in ``width``) or
            ``"flatten"`` (a weight per position, fan-in ``width · H · W``, with which the
            parameterization's output rule is taken).
        seed: seed of the generator drawing all parameters.
        dtype: floating dtype.
        device: device.

    Returns:
        A :class:`ResNet` mapping ``(n, in_channels, H, W)`` to ``(n, out_dim)``.

    Raises:
        ValueError: on a non-positive size, an unknown activation or parameterization.

    """
    net = conv_layers(
        in_channels,
        image_size,
        width,
        out_dim,
        depth=depth,
        activation=activation,
        parameterization=parameterization,
        kernel_size=kernel_size,
        init_scale=init_scale,
        base_width=base_width,
        readout=readout,
        seed=seed,
        dtype=dtype,
        device=device,
    )
    default_beta = 1.0 / math.sqrt(net.depth) if skip else 1.0
    beta = default_beta if branch_scale is None else check.real("branch_scale", branch_scale)

    hidden = net.spec("hidden", net.width * net.kernel_size**2)

    def norm() -> nn.Module:
        if not batchnorm:
            return nn.Identity()
        bn = nn.BatchNorm2d(net.width, dtype=net.dtype, device=device)
        # width-sized (vector-like) like a hidden bias: its learning-rate multipliers (μP, SGD:
        # r, as mup.MuSGD; adaptive: 1, as MuAdam)
        setattr(bn, "lr_multipliers", {"weight": hidden.lr_bias, "bias": hidden.lr_bias})  # noqa: B010
        if hidden.adaptive_lr_bias is not None:
            c = hidden.adaptive_lr_bias
            setattr(bn, "adaptive_lr_multipliers", {"weight": c, "bias": c})  # noqa: B010
        return bn

    stem = net.conv(net.in_channels, "input")
    act = get_activation(activation)
    blocks = [
        ResidualBlock(
            net.conv(net.width, "hidden"),
            net.conv(net.width, "hidden"),
            norm(),
            norm(),
            act,
            bool(skip),
            beta,
        )
        for _ in range(net.depth)
    ]
    return ResNet(stem, blocks, net.readout(readout), act, net.size, readout)
