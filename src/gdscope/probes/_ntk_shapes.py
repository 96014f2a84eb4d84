r"""Whether a layer's parameters have the shapes its size attributes say.

torch's stock forwards read only ``weight`` and ``bias``: a weight put into an existing layer
(a new head, ``layer.weight = nn.Parameter(torch.randn(3, 6))``) runs, while ``out_features``,
``kernel_size`` and kin keep the old sizes, and ``F.linear`` broadcasts a bias of shape ``(1,)``
onto every output. The fast NTK paths take a layer's sizes from what its code says, so such a
layer is not theirs: :func:`~gdscope.probes._ntk_uses.plain_structure` does not call its stack
plain and :func:`~gdscope.probes._ntk_uses.unsupported_modules` lists it, and ``"auto"`` takes
the Jacobian route, which reads the parameters themselves. One shape comparison per layer.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from gdscope.models.layers import ScaledConv2d, ScaledLinear


def sizes_agree(module: nn.Module) -> bool:
    """Whether a linear or conv layer's ``weight`` and ``bias`` have the shapes its attributes say.

    ``(out_features, in_features)`` for a linear layer, ``(out_channels, in_channels / groups,
    *kernel_size)`` for a convolution (``ScaledConv2d``: a square kernel, one group), and
    ``(out,)`` for the bias; ``True`` for any other module.

    >>> import torch
    >>> layer = nn.Linear(6, 2)
    >>> sizes_agree(layer)
    True
    >>> layer.weight = nn.Parameter(torch.randn(3, 6))  # a new head; out_features is still 2
    >>> sizes_agree(layer)
    False
    """
    if isinstance(module, (nn.Linear, ScaledLinear)):
        shape: tuple[int, ...] = (module.out_features, module.in_features)
    elif isinstance(module, ScaledConv2d):
        side = module.kernel_size
        shape = (module.out_channels, module.in_channels, side, side)
    elif isinstance(module, nn.modules.conv._ConvNd):
        if module.transposed:  # (in, out / groups, *kernel)
            shape = (module.in_channels, module.out_channels // module.groups)
        else:
            shape = (module.out_channels, module.in_channels // module.groups)
        shape += tuple(module.kernel_size)
    else:
        return True
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if not isinstance(weight, Tensor) or is_lazy(weight) or weight.shape != shape:
        return False
    out = module.out_channels if isinstance(module, nn.modules.conv._ConvNd) else shape[0]
    return bias is None or (isinstance(bias, Tensor) and not is_lazy(bias) and bias.shape == (out,))


def linear_sizes_agree(layer: nn.Linear | ScaledLinear) -> bool:
    """:func:`sizes_agree` of a linear layer whose weight and bias are its parameters (fast)."""
    own, out = layer._parameters, layer.out_features
    weight, bias = own["weight"], own["bias"]
    return (
        weight is not None
        and weight.shape == (out, layer.in_features)
        and (bias is None or bias.shape == (out,))
    )
