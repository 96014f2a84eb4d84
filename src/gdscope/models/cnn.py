r"""A plain convolutional network: ``depth`` same-padded conv layers, global average pool, readout.

.. math::

    h_1 = σ(C_1 x), \quad h_{l+1} = σ(C_{l+1} h_l), \quad
    f(x) = L\Big(\frac{1}{HW} \sum_{i,j} h_{D}[:, i, j]\Big),

with stride-1 :class:`~gdscope.models.layers.ScaledConv2d` layers ``C_l`` (``channels``
channels each) and a :class:`~gdscope.models.layers.ScaledLinear` readout ``L``. The width of
the parameterization is the channel count (fan-in of a conv unit: ``in_channels · k²``).
"""

from __future__ import annotations

import torch
from torch import nn

from gdscope import _checks as check

from .activations import ACTIVATIONS, activation_gain, get_activation
from .layers import ScaledConv2d, ScaledLinear
from .parameterization import Parameterization, get_parameterization


class CNN(nn.Module):
    """Conv layers, global average pool, linear readout; build it with :func:`cnn`.

    Attributes:
        convs: ``ModuleList`` of the conv layers.
        readout: the linear readout.
        activation: the activation module.
        in_channels: expected input channels.
        image_size: expected ``(H, W)``.

    """

    def __init__(
        self,
        convs: list[ScaledConv2d],
        readout: ScaledLinear,
        activation: nn.Module,
        image_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.readout = readout
        self.activation = activation
        self.in_channels = convs[0].in_channels
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(n, C, H, W)`` to logits ``(n, num_classes)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (n, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        h = x
        for conv in self.convs:
            h = self.activation(conv(h))
        return self.readout(h.mean(dim=(-2, -1)))  # (n, channels) -> (n, num_classes)


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
    channels: int,
    num_classes: int,
    depth: int = 2,
    activation: str = "relu",
    parameterization: str | Parameterization = "standard",
    kernel_size: int = 3,
    init_scale: float = 1.0,
    base_width: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> CNN:
    """Build a plain CNN with ``depth`` conv layers of ``channels`` channels and a readout.

    Args:
        in_channels: channels of the input images.
        image_size: ``H`` (square images) or ``(H, W)``; inputs are ``(n, C, H, W)``.
        channels: channels of every conv layer (the "width").
        num_classes: outputs of the readout.
        depth: number of conv layers (the readout comes on top).
        activation: one of ``relu``, ``tanh``, ``gelu``, ``softplus``, ``identity``.
        parameterization: ``standard``, ``ntk``, ``mup``, ``meanfield`` or a ``Parameterization``.
        kernel_size: side of the square kernels (stride 1, ``"same"`` padding).
        init_scale: factor on every weight's init std.
        base_width: channel count at which μP equals standard.
        seed: seed of the generator drawing all parameters.
        dtype: floating dtype.
        device: device.

    Returns:
        A :class:`CNN` mapping ``(n, in_channels, H, W)`` to ``(n, num_classes)``.

    Raises:
        ValueError: on a non-positive size, an unknown activation or parameterization.

    """
    in_channels = check.positive_int("in_channels", in_channels)
    size = image_shape(image_size)
    channels = check.positive_int("channels", channels)
    num_classes = check.positive_int("num_classes", num_classes)
    depth = check.positive_int("depth", depth)
    kernel_size = check.positive_int("kernel_size", kernel_size)
    base_width = check.positive_int("base_width", base_width)
    check.one_of("activation", activation, ACTIVATIONS)
    init_scale = check.positive_float("init_scale", init_scale)
    param = get_parameterization(parameterization)
    dtype = check.floating_dtype(dtype)
    generator = check.generator(seed)
    ratio = channels / base_width
    gain = activation_gain(activation)
    convs = []
    for index in range(depth):
        fan_in_channels = in_channels if index == 0 else channels
        spec = param.layer(
            "input" if index == 0 else "hidden",
            fan_in_channels * kernel_size**2,
            ratio,
            activation_gain=gain,
            init_scale=init_scale,
            base_width=base_width,
        )
        convs.append(
            ScaledConv2d(
                fan_in_channels,
                channels,
                kernel_size,
                spec,
                generator=generator,
                dtype=dtype,
                device=device,
            )
        )
    spec = param.layer(
        "output",
        channels,
        ratio,
        activation_gain=gain,
        init_scale=init_scale,
        base_width=base_width,
    )
    readout = ScaledLinear(
        channels, num_classes, spec, generator=generator, dtype=dtype, device=device
    )
    return CNN(convs, readout, get_activation(activation), size)
