r"""A plain convolutional network: ``depth`` same-padded conv layers, then a linear readout.

.. math::

    h_1 = σ(C_1 x), \quad h_{l+1} = σ(C_{l+1} h_l), \quad
    f(x) = L\Big(\frac{1}{HW} \sum_{i,j} h_{D}[:, i, j]\Big) \;\text{(pool)} \quad\text{or}\quad
    f(x) = L\big(\operatorname{vec} h_D\big) = \sum_{i,j} B_{ij}\, h_D[:, i, j] \;\text{(flatten)},

with stride-1 :class:`~gdscope.models.layers.ScaledConv2d` layers ``C_l`` (``width``
channels each) and a :class:`~gdscope.models.layers.ScaledLinear` readout ``L``. The width of
the parameterization is the channel count (fan-in of a conv unit: ``in_channels · k²``). The
``"pool"`` readout (default) sees the global average of the last feature map (fan-in
``width``); the ``"flatten"`` readout has its own weights ``B_{ij}`` at every position (fan-in
``width · H · W``), as the CNN of Allen-Zhu, Li & Song (2019, "A convergence theory for deep
learning via over-parameterization", §2: the output layer reads every position), which is what
lets a narrow CNN memorize arbitrary labels: a pooled readout sees only translation-averaged
features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gdscope import _checks as check

from .activations import ACTIVATIONS, activation_gain, get_activation
from .layers import ScaledConv2d, ScaledLinear
from .parameterization import LayerSpec, Parameterization, get_parameterization

READOUTS: tuple[str, ...] = ("pool", "flatten")


class CNN(nn.Module):
    """Conv layers, then a pooled or flattened linear readout; build it with :func:`cnn`.

    Attributes:
        convs: ``ModuleList`` of the conv layers.
        readout: the linear readout.
        activation: the activation module.
        in_channels: expected input channels.
        image_size: expected ``(H, W)``.
        pooling: ``"pool"`` (global average, then readout) or ``"flatten"`` (readout of every
            position).

    """

    def __init__(
        self,
        convs: list[ScaledConv2d],
        readout: ScaledLinear,
        activation: nn.Module,
        image_size: tuple[int, int],
        pooling: str = "pool",
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.readout = readout
        self.activation = activation
        self.in_channels = convs[0].in_channels
        self.image_size = image_size
        self.pooling = check.one_of("readout", pooling, READOUTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(n, C, H, W)`` to logits ``(n, out_dim)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (n, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        check_image_size(x, self.image_size, self.pooling)
        h = x
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.readout(read_features(h, self.pooling))


def check_image_size(x: torch.Tensor, size: tuple[int, int], pooling: str) -> None:
    """Raise unless a ``"flatten"`` readout, whose fan-in is ``width·H·W``, gets ``size`` images."""
    if pooling == "flatten" and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"the flatten readout was built for {size[0]}×{size[1]} images, got "
            f"{x.shape[-2]}×{x.shape[-1]}; build the model with image_size=(H, W) of the data"
        )


def read_features(h: torch.Tensor, pooling: str) -> torch.Tensor:
    """Return what the readout sees of a feature map ``(n, c, H, W)``.

    ``"pool"``: the spatial mean, ``(n, c)``; ``"flatten"``: every position, ``(n, c·H·W)``.
    """
    if pooling == "flatten":
        return h.flatten(1)  # (n, c, H, W) -> (n, c·H·W)
    return h.mean(dim=(-2, -1))  # (n, c, H, W) -> (n, c)


def readout_fan_in(width: int, size: tuple[int, int], pooling: str) -> int:
    """Fan-in of the readout: ``width`` (pool) or ``width · H · W`` (flatten)."""
    check.one_of("readout", pooling, READOUTS)
    return width * size[0] * size[1] if pooling == "flatten" else width


def image_shape(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``(H, W)`` from an int (square) or a pair of positive ints."""
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return (
            check.positive_int("image_size[0]", image_size[0]),
            check.positive_int("image_size[1]", image_size[1]),
        )
    if isinstance(image_size, (tuple, list)):
        raise ValueError(f"image_size must be an int or a pair (H, W), got {image_size!r}")
    side = check.positive_int("image_size", image_size)
    return (side, side)


def cnn(
    in_channels: int,
    image_size: int | tuple[int, int],
    width: int,
    out_dim: int,
    *,
    depth: int = 2,
    activation: str = "relu",
    parameterization: str | Parameterization = "standard",
    kernel_size: int = 3,
    init_scale: float = 1.0,
    base_width: int = 64,
    readout: str = "pool",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> CNN:
    """Build a plain CNN with ``depth`` conv layers of ``width`` channels and a readout.

    Args:
        in_channels: channels of the input images.
        image_size: ``H`` (square images) or ``(H, W)``; inputs are ``(n, C, H, W)``.
        width: channels of every conv layer.
        out_dim: outputs of the readout (classes, or 1 for a scalar output).
        depth: number of conv layers (the readout comes on top).
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        parameterization: ``standard``, ``ntk``, ``mup``, ``meanfield`` or a ``Parameterization``.
        kernel_size: side of the square kernels (stride 1, ``"same"`` padding).
        init_scale: factor on every weight's init std.
        base_width: channel count at which μP equals standard.
        readout: ``"pool"`` (global average pool, readout fan-in ``width``) or
            ``"flatten"`` (a weight per position, fan-in ``width · H · W``: the output
            rule of the parameterization, e.g. the NTK multiplier ``(width·H·W)^{-1/2}``,
            is taken with that fan-in).
        seed: seed of the generator drawing all parameters.
        dtype: floating dtype.
        device: device.

    Returns:
        A :class:`CNN` mapping ``(n, in_channels, H, W)`` to ``(n, out_dim)``.

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
    convs = [
        net.conv(net.in_channels if index == 0 else net.width, "input" if index == 0 else "hidden")
        for index in range(net.depth)
    ]
    layer = net.readout(readout)
    return CNN(convs, layer, get_activation(activation), net.size, readout)


@dataclass(frozen=True)
class ConvLayers:
    """The checked settings shared by the conv-net factories, and the layers drawn from them.

    :func:`cnn` and :func:`~gdscope.models.resnet.resnet` draw their layers in order from the
    one ``generator`` (a conv per call of :meth:`conv`, then :meth:`readout`).
    """

    in_channels: int
    size: tuple[int, int]
    width: int
    out_dim: int
    depth: int
    kernel_size: int
    base_width: int
    init_scale: float
    param: Parameterization
    gain: float
    dtype: torch.dtype
    device: torch.device | str
    generator: torch.Generator

    def spec(self, role: str, fan_in: int) -> LayerSpec:
        """Return the parameterization's rule for a layer of ``role`` with ``fan_in`` inputs."""
        return self.param.layer(
            role,
            fan_in,
            self.width / self.base_width,
            activation_gain=self.gain,
            init_scale=self.init_scale,
            base_width=self.base_width,
        )

    def conv(self, c_in: int, role: str) -> ScaledConv2d:
        """Draw a ``c_in → width`` conv layer (stride 1, ``"same"`` padding)."""
        return ScaledConv2d(
            c_in,
            self.width,
            self.kernel_size,
            self.spec(role, c_in * self.kernel_size**2),
            generator=self.generator,
            dtype=self.dtype,
            device=self.device,
        )

    def readout(self, readout: str) -> ScaledLinear:
        """Draw the readout (``"pool"`` or ``"flatten"``) with the output rule of its fan-in."""
        fan_in = readout_fan_in(self.width, self.size, readout)
        return ScaledLinear(
            fan_in,
            self.out_dim,
            self.spec("output", fan_in),
            generator=self.generator,
            dtype=self.dtype,
            device=self.device,
        )


def conv_layers(
    in_channels: int,
    image_size: int | tuple[int, int],
    width: int,
    out_dim: int,
    *,
    depth: int,
    activation: str,
    parameterization: str | Parameterization,
    kernel_size: int,
    init_scale: float,
    base_width: int,
    readout: str,
    seed: int,
    dtype: torch.dtype,
    device: torch.device | str,
) -> ConvLayers:
    """Check the arguments of a conv-net factory (``ValueError`` naming the bad one)."""
    in_channels = check.positive_int("in_channels", in_channels)
    size = image_shape(image_size)
    width = check.positive_int("width", width)
    out_dim = check.positive_int("out_dim", out_dim)
    depth = check.positive_int("depth", depth)
    kernel_size = check.positive_int("kernel_size", kernel_size)
    base_width = check.positive_int("base_width", base_width)
    check.one_of("activation", activation, ACTIVATIONS)
    check.one_of("readout", readout, READOUTS)
    init_scale = check.positive_float("init_scale", init_scale)
    param = get_parameterization(parameterization)
    dtype = check.floating_dtype(dtype)
    device = check.device(device)
    generator = check.generator(seed)
    return ConvLayers(
        in_channels,
        size,
        width,
        out_dim,
        depth,
        kernel_size,
        base_width,
        init_scale,
        param,
        activation_gain(activation),
        dtype,
        device,
        generator,
    )
